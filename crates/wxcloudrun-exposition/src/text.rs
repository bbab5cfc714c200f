//! [`Text`]: a string of the page, borrowed unless it had to be unescaped, in two words.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// A name or value read from the page: borrowed from the page text, or owned when unescaping
/// changed it (`a\"b`). Reads as a `&str` (it derefs to one, and compares with `str`, `&str` and
/// `String`).
///
/// Why not `Cow<'a, str>`: a `Cow` is three words, this is two. A page holds one per label name,
/// label value and sample name, and the parsed page is held whole while it is converted: on a page
/// of 100,000 four-label series the third word is 7 MB. The owned case (rare: a value with a
/// backslash) pays for it with a second allocation.
///
/// ```
/// use wxcloudrun_exposition::Text;
///
/// let borrowed = Text::from("route");
/// let owned = Text::from(String::from("a\"b"));
/// assert_eq!(borrowed, "route");
/// assert!(borrowed.is_borrowed() && !owned.is_borrowed());
/// assert_eq!(owned.len(), 3);
/// assert_eq!(size_of::<Text<'_>>(), 2 * size_of::<usize>());
/// ```
#[derive(Clone)]
pub struct Text<'a>(Repr<'a>);

// The owned string sits behind a second box so that its one word fits beside the borrowed
// pointer's niche: the enum is two words, where `Box<str>` would make it three.
#[derive(Clone)]
#[allow(clippy::box_collection, clippy::redundant_allocation)]
enum Repr<'a> {
    Borrowed(&'a str),
    Owned(Box<Box<str>>),
}

impl<'a> Text<'a> {
    /// A text borrowing `text`.
    pub const fn borrowed(text: &'a str) -> Text<'a> {
        Text(Repr::Borrowed(text))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Borrowed(text) => text,
            Repr::Owned(text) => text,
        }
    }

    /// Whether it borrows from the page (it was written without escapes).
    pub fn is_borrowed(&self) -> bool {
        matches!(self.0, Repr::Borrowed(_))
    }

    /// Copies it if it is borrowed, so that it outlives the page.
    pub fn into_owned(self) -> Text<'static> {
        match self.0 {
            Repr::Borrowed(text) => Text(Repr::Owned(Box::new(Box::from(text)))),
            Repr::Owned(text) => Text(Repr::Owned(text)),
        }
    }

    /// The same string as a `Cow` (borrowed when this is).
    pub fn into_cow(self) -> Cow<'a, str> {
        match self.0 {
            Repr::Borrowed(text) => Cow::Borrowed(text),
            Repr::Owned(text) => Cow::Owned(String::from(*text)),
        }
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(text: &'a str) -> Text<'a> {
        Text::borrowed(text)
    }
}

impl From<String> for Text<'_> {
    fn from(text: String) -> Self {
        Text(Repr::Owned(Box::new(text.into_boxed_str())))
    }
}

impl<'a> From<Cow<'a, str>> for Text<'a> {
    fn from(text: Cow<'a, str>) -> Text<'a> {
        match text {
            Cow::Borrowed(text) => Text::borrowed(text),
            Cow::Owned(text) => Text::from(text),
        }
    }
}

impl Default for Text<'_> {
    fn default() -> Self {
        Text::borrowed("")
    }
}

impl Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Text<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text<'_> {}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text<'_> {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Text<'_>> for str {
    fn eq(&self, other: &Text<'_>) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Text<'_>> for &str {
    fn eq(&self, other: &Text<'_>) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Text<'_>> for String {
    fn eq(&self, other: &Text<'_>) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialOrd for Text<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

// As the `str`: `Borrow<str>` lookups in hash maps must find it.
impl Hash for Text<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_and_owned_read_compare_and_hash_as_their_string() {
        use std::collections::HashSet;
        let borrowed = Text::from("a\"b");
        let owned = Text::from(String::from("a\"b"));
        assert_eq!(borrowed, owned);
        assert!(borrowed.is_borrowed() && !owned.is_borrowed());
        let set: HashSet<Text<'_>> = [owned.clone()].into_iter().collect();
        assert!(set.contains("a\"b"));
        assert_eq!(format!("{owned:?} {owned}"), "\"a\\\"b\" a\"b");
        let (a, b) = (Text::from("a"), Text::from(String::from("b")));
        assert!(a < b);
        assert!(matches!(owned.into_cow(), Cow::Owned(s) if s == "a\"b"));
        assert!(matches!(borrowed.clone().into_cow(), Cow::Borrowed("a\"b")));
        let kept: Text<'static> = borrowed.into_owned();
        assert!(!kept.is_borrowed());
        assert_eq!(kept, "a\"b");
    }
}
