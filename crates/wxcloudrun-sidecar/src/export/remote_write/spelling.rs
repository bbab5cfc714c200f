//! How remote write spells bucket bounds and quantiles: as Prometheus 3 or as Prometheus 2 stored
//! them (see [`BoundSpelling`]), and Go's float formatting both start from.

/// How remote write spells `le` and `quantile` values (`--bound-spelling`).
///
/// The two differ only for integral bounds: `1` / `1.0`, `0` / `0.0`, `100000` / `100000.0`.
/// Every other bound is spelled alike: `0.25`, `1e+06`, `1e-05`, `+Inf`, `-Inf`, `NaN`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BoundSpelling {
    /// As Prometheus 3 stores a scraped bound whatever its client wrote (`FormatOpenMetricsFloat`):
    /// Go's shortest form with `.0` added when it has neither `.` nor `e` (`le="1.0"`,
    /// `quantile="0.0"`; `-0` is `0.0`).
    #[default]
    Prometheus3,
    /// As the Go client writes bounds in the text format and Prometheus 2 stored them from such a
    /// page (`strconv.FormatFloat(v, 'g', -1, 64)`: `le="1"`, `quantile="0"`), for series already
    /// stored that way.
    Prometheus2,
}

impl BoundSpelling {
    /// Both spellings, as [`BoundSpelling::as_str`] names them.
    pub const ALL: [BoundSpelling; 2] = [BoundSpelling::Prometheus3, BoundSpelling::Prometheus2];

    /// `prometheus3` or `prometheus2`.
    pub fn as_str(self) -> &'static str {
        match self {
            BoundSpelling::Prometheus3 => "prometheus3",
            BoundSpelling::Prometheus2 => "prometheus2",
        }
    }

    /// The setting's value: `prometheus3` or `prometheus2` (any case).
    pub fn parse(text: &str) -> Option<BoundSpelling> {
        BoundSpelling::ALL
            .into_iter()
            .find(|spelling| spelling.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// `bound` as this spelling writes it.
    ///
    /// ```
    /// use wxcloudrun_sidecar::export::remote_write::BoundSpelling;
    /// assert_eq!(BoundSpelling::Prometheus3.format(1.0), "1.0");
    /// assert_eq!(BoundSpelling::Prometheus2.format(1.0), "1");
    /// assert_eq!(BoundSpelling::Prometheus3.format(0.25), "0.25");
    /// assert_eq!(BoundSpelling::Prometheus3.format(1e6), "1e+06");
    /// assert_eq!(BoundSpelling::Prometheus3.format(f64::INFINITY), "+Inf");
    /// ```
    pub fn format(self, bound: f64) -> String {
        match self {
            BoundSpelling::Prometheus2 => format_float(bound),
            BoundSpelling::Prometheus3 if bound == 0.0 => "0.0".to_owned(),
            BoundSpelling::Prometheus3 => {
                let mut text = format_float(bound);
                if bound.is_finite() && !text.contains(['.', 'e']) {
                    text.push_str(".0");
                }
                text
            }
        }
    }
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it, with Prometheus' `+Inf`,
/// `-Inf` and `NaN`: `0.005`, `1`, `2.5`, `1e+06`, `1e-05`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    // Rust's `{:e}` gives the same shortest round-trip digits as Go: `d[.ddd]e[-]x`.
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    let mut out = String::new();
    if v.is_sign_negative() {
        out.push('-');
    }
    // With shortest precision Go picks the exponent form outside 1e-4 <= |v| < 1e6 (`eprec` 6).
    let nd = digits.len() as i32;
    if !(-4..6).contains(&exp) {
        out.push(digit(&digits, 0));
        if digits.len() > 1 {
            out.push('.');
            out.extend(digits[1..].iter().map(|&d| char::from(d)));
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let abs = exp.unsigned_abs();
        if abs < 10 {
            out.push('0');
        }
        out.push_str(&abs.to_string());
        return out;
    }
    // Fixed notation: `dp` digits before the point.
    let dp = exp + 1;
    if dp <= 0 {
        out.push('0');
    } else {
        for i in 0..dp {
            out.push(digit(&digits, i));
        }
    }
    if nd > dp {
        out.push('.');
        for i in dp..nd {
            out.push(digit(&digits, i));
        }
    }
    out
}

/// The digit at position `i` of the shortest representation, `0` outside it.
fn digit(digits: &[u8], i: i32) -> char {
    usize::try_from(i)
        .ok()
        .and_then(|i| digits.get(i))
        .map_or('0', |&d| char::from(d))
}
