//! Brace patterns naming many shards: `train-{000000..000127}.tar` (a numeric range, zero
//! padded to the width of its first bound) and `{train,val}-{0..3}.tar` (alternatives), as
//! WebDataset writes them. Expanded left to right, in order.

use crate::error::{Error, Result};

/// Patterns beyond this many names are refused (a typo like `{0..99999999}`).
const MAX_NAMES: usize = 10_000_000;

/// Every name `pattern` stands for, in order (the pattern itself when it has no braces).
pub fn expand(pattern: &str) -> Result<Vec<String>> {
    let error = |why: &str| Error::Source(format!("shard pattern `{pattern}`: {why}"));
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') {
            return Err(error("a `}` without its `{`"));
        }
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find('}')
        .map(|i| open + i)
        .ok_or_else(|| error("a `{` without its `}`"))?;
    let (head, body, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    if body.contains('{') {
        return Err(error("nested braces"));
    }
    let choices = alternatives(body).map_err(|why| error(&why))?;
    let rest = expand(tail)?;
    if choices.len().saturating_mul(rest.len()) > MAX_NAMES {
        return Err(error(&format!("more than {MAX_NAMES} names")));
    }
    let mut names = Vec::with_capacity(choices.len() * rest.len());
    for choice in &choices {
        for r in &rest {
            names.push(format!("{head}{choice}{r}"));
        }
    }
    Ok(names)
}

/// The choices inside one pair of braces: `a..b` (numbers) or `x,y,z`.
fn alternatives(body: &str) -> std::result::Result<Vec<String>, String> {
    if let Some((lo, hi)) = body.split_once("..") {
        let parse = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("`{s}` in `{{{body}}}` is not a number"))
        };
        let (a, b) = (parse(lo)?, parse(hi)?);
        if b < a {
            return Err(format!("the range `{{{body}}}` runs backwards"));
        }
        if b - a >= MAX_NAMES as u64 {
            return Err(format!("more than {MAX_NAMES} names"));
        }
        let width = lo.len();
        return Ok((a..=b).map(|i| format!("{i:0width$}")).collect());
    }
    if body.is_empty() {
        return Err("empty braces".into());
    }
    Ok(body.split(',').map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn ranges_keep_their_padding_and_alternatives_their_order() {
        assert_eq!(
            expand("s3://b/train-{000..002}.tar").unwrap(),
            [
                "s3://b/train-000.tar",
                "s3://b/train-001.tar",
                "s3://b/train-002.tar"
            ]
        );
        assert_eq!(
            expand("{val,train}-{8..10}.tar").unwrap(),
            [
                "val-8.tar",
                "val-9.tar",
                "val-10.tar",
                "train-8.tar",
                "train-9.tar",
                "train-10.tar"
            ]
        );
        assert_eq!(expand("plain.tar").unwrap(), ["plain.tar"]);
        for bad in [
            "a-{3..1}.tar",
            "a-{1..x}.tar",
            "a-{1..2.tar",
            "a-}.tar",
            "{}",
            "{{1..2}}",
        ] {
            assert!(expand(bad).is_err(), "{bad} accepted");
        }
        assert!(expand("{0..99999999}").is_err());
    }
}
