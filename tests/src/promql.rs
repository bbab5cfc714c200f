//! Just enough PromQL to lint expressions without a Prometheus: a lexer, bracket balance, known
//! functions, the metric names an expression reads and the range of each range function.
//!
//! Grafana variables (`$name`, `${name}`, `${name:format}`) are tokens of their own, so dashboard
//! queries can be checked before their macros are substituted. A real parse happens in the tests
//! that hand the same queries to `promtool` and to a running Prometheus.

use std::collections::BTreeSet;

/// One token of a PromQL expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// Metric, label, function or keyword name.
    Ident(String),
    /// A string literal, unescaped only as far as the quotes.
    Str(String),
    /// A number or a duration (`0.5`, `1e4`, `5m`).
    Number(String),
    /// A Grafana variable or macro, without the `$` and braces (`__rate_interval`, `wx_service`).
    Var(String),
    /// Brackets, commas and operators.
    Punct(String),
}

/// Functions of Prometheus 2.42.
const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_quantile",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Splits `expr` into tokens.
pub fn lex(expr: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let take_while = |mut j: usize, f: &dyn Fn(char) -> bool| {
        while j < chars.len() && f(chars[j]) {
            j += 1;
        }
        j
    };
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            i = take_while(i, &|c| c != '\n');
        } else if c == '"' || c == '\'' || c == '`' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != c {
                // Backslash escapes exist in "..." and '...', not in raw `...` strings.
                j += if chars[j] == '\\' && c != '`' { 2 } else { 1 };
            }
            if j >= chars.len() {
                return Err(format!("unterminated string at offset {i}"));
            }
            tokens.push(Token::Str(chars[i + 1..j].iter().collect()));
            i = j + 1;
        } else if c == '$' {
            let (name, end) = if chars.get(i + 1) == Some(&'{') {
                let close = take_while(i + 2, &|c| c != '}');
                if close >= chars.len() {
                    return Err(format!("unterminated ${{ at offset {i}"));
                }
                let inner: String = chars[i + 2..close].iter().collect();
                let name = inner
                    .split([':', '.'])
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                (name, close + 1)
            } else {
                let end = take_while(i + 1, &|c| c.is_ascii_alphanumeric() || c == '_');
                (chars[i + 1..end].iter().collect(), end)
            };
            if name.is_empty() {
                return Err(format!("empty variable name at offset {i}"));
            }
            tokens.push(Token::Var(name));
            i = end;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let mut j = i;
            loop {
                j = take_while(j, &|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
                // An exponent's sign belongs to the number: 1e-9.
                let exponent =
                    matches!(chars[j - 1], 'e' | 'E') && matches!(chars.get(j), Some('+' | '-'));
                if !exponent {
                    break;
                }
                j += 1;
            }
            tokens.push(Token::Number(chars[i..j].iter().collect()));
            i = j;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let end = take_while(i, &is_ident);
            tokens.push(Token::Ident(chars[i..end].iter().collect()));
            i = end;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = if ["==", "!=", "<=", ">=", "=~", "!~"].contains(&two.as_str()) {
                two
            } else if "(){}[],@=<>+-*/%^".contains(c) {
                c.to_string()
            } else {
                return Err(format!("unexpected character {c:?} at offset {i}"));
            };
            i += op.chars().count();
            tokens.push(Token::Punct(op));
        }
    }
    Ok(tokens)
}

fn is_punct(token: Option<&Token>, p: &str) -> bool {
    matches!(token, Some(Token::Punct(q)) if q == p)
}

/// Index of the bracket that closes the one at `open`.
fn closing(tokens: &[Token], open: usize) -> Result<usize, String> {
    let mut stack = Vec::new();
    for (i, token) in tokens.iter().enumerate().skip(open) {
        if let Token::Punct(p) = token {
            match p.as_str() {
                "(" | "{" | "[" => stack.push(p.as_str()),
                ")" | "}" | "]" => {
                    let expected = match p.as_str() {
                        ")" => "(",
                        "}" => "{",
                        _ => "[",
                    };
                    if stack.pop() != Some(expected) {
                        return Err(format!("unbalanced {p}"));
                    }
                    if stack.is_empty() {
                        return Ok(i);
                    }
                }
                _ => {}
            }
        }
    }
    Err("unclosed bracket".to_owned())
}

/// Checks brackets and function names, and returns the metric names that `expr` reads.
pub fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let tokens = lex(expr)?;
    if tokens.is_empty() {
        return Err("empty expression".to_owned());
    }
    // Whole-expression balance first: `closing` reports the first mismatch.
    let mut depth = 0i32;
    for token in &tokens {
        if let Token::Punct(p) = token {
            match p.as_str() {
                "(" | "{" | "[" => depth += 1,
                ")" | "}" | "]" => depth -= 1,
                _ => {}
            }
            if depth < 0 {
                return Err(format!("unbalanced {p}"));
            }
        }
    }
    if depth != 0 {
        return Err("unclosed bracket".to_owned());
    }
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            // Label matchers: names inside are labels, not metrics.
            Token::Punct(p) if p == "{" => i = closing(&tokens, i)?,
            Token::Punct(p) if p == "[" => {
                let close = closing(&tokens, i)?;
                let range = &tokens[i + 1..close];
                if !matches!(range, [Token::Number(_)] | [Token::Var(_)]) {
                    return Err(format!("a range must be one duration, got {range:?}"));
                }
                i = close;
            }
            Token::Ident(word)
                if LABEL_LISTS.contains(&word.as_str()) && is_punct(tokens.get(i + 1), "(") =>
            {
                i = closing(&tokens, i + 1)?;
            }
            Token::Ident(word) if KEYWORDS.contains(&word.as_str()) => {}
            Token::Ident(word)
                if AGGREGATIONS.contains(&word.as_str()) && !is_punct(tokens.get(i + 1), "{") => {}
            Token::Ident(word)
                if is_punct(tokens.get(i + 1), "(") && !FUNCTIONS.contains(&word.as_str()) =>
            {
                return Err(format!("unknown function {word}"));
            }
            // Not a call: a metric name.
            Token::Ident(word) if !is_punct(tokens.get(i + 1), "(") => {
                names.insert(word.clone());
            }
            _ => {}
        }
        i += 1;
    }
    Ok(names)
}

/// For every call of a function over a range (`rate`, `increase`, `*_over_time`, …): the
/// function's name and the text of each range inside its parentheses.
pub fn range_calls(expr: &str) -> Result<Vec<(String, String)>, String> {
    let tokens = lex(expr)?;
    let mut calls = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let Token::Ident(name) = token else { continue };
        let ranged = [
            "rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets",
        ]
        .contains(&name.as_str())
            || name.ends_with("_over_time");
        if !ranged || !is_punct(tokens.get(i + 1), "(") {
            continue;
        }
        let close = closing(&tokens, i + 1)?;
        for j in i + 2..close {
            if is_punct(tokens.get(j), "[") {
                let range = match tokens.get(j + 1) {
                    Some(Token::Var(v)) => format!("${v}"),
                    Some(Token::Number(n)) => n.clone(),
                    other => return Err(format!("bad range in {name}: {other:?}")),
                };
                calls.push((name.clone(), range));
            }
        }
    }
    Ok(calls)
}

/// Every `le` matcher value (`le="0.5"` and `le=~"…"`) in `expr`.
pub fn le_matchers(expr: &str) -> Result<Vec<(String, String)>, String> {
    let tokens = lex(expr)?;
    Ok(tokens
        .windows(3)
        .filter_map(|w| match w {
            [Token::Ident(label), Token::Punct(op), Token::Str(value)] if label == "le" => {
                Some((op.clone(), value.clone()))
            }
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).unwrap().into_iter().collect()
    }

    #[test]
    fn finds_metrics_not_labels_functions_or_keywords() {
        let expr = r#"histogram_quantile(0.99, sum by (le, http_route) (rate(a_bucket{le="0.5", x=~"$v"}[$__rate_interval]))
            and on (http_route) (sum by (http_route) (rate(a_count[5m])) > 0)) / on () group_left () (1 - b:c:ratio)
            or vector(0) unless x offset $__range"#;
        assert_eq!(names(expr), ["a_bucket", "a_count", "b:c:ratio", "x"]);
        assert_eq!(names("sum(x) by (job) > bool 1e-4"), ["x"]);
        assert_eq!(
            names(r#"label_replace(y, "class", "${1}xx", "code", "([0-9]).*")"#),
            ["y"]
        );
        assert_eq!(
            names("count{job=\"a\"}"),
            ["count"],
            "an aggregation's name used as a metric"
        );
    }

    #[test]
    fn rejects_what_prometheus_would() {
        assert!(metric_names("sum(rate(x[5m])").is_err());
        assert!(metric_names("rate(x[5m)]").is_err());
        assert!(metric_names("histogram_quantlie(0.9, x)").is_err());
        assert!(metric_names("rate(x[])").is_err());
        assert!(metric_names("x{a=\"b}").is_err());
        assert!(metric_names("x ; y").is_err());
        assert!(metric_names("").is_err());
    }

    #[test]
    fn lists_ranges_and_le_matchers() {
        let expr = r#"sum(rate(x_bucket{le="0.5"}[$__rate_interval])) / sum(increase(y[5m])) + max_over_time(z[${__range}])"#;
        assert_eq!(
            range_calls(expr).unwrap(),
            [
                ("rate".to_owned(), "$__rate_interval".to_owned()),
                ("increase".to_owned(), "5m".to_owned()),
                ("max_over_time".to_owned(), "$__range".to_owned()),
            ]
        );
        assert_eq!(
            le_matchers(expr).unwrap(),
            [("=".to_owned(), "0.5".to_owned())]
        );
    }
}
