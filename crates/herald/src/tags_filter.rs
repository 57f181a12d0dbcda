//! Publication tags filters: the subscribe `tf` field (Centrifugo's `FilterNode`), checked
//! once at subscribe time ([`validate`]) and evaluated for every publication of the channel
//! against its tags ([`matches`]).
//!
//! Why a module of its own: the filter decides per subscriber whether a publication is sent,
//! while the publication itself stays encoded once for everybody (see
//! [`crate::hub::Hub::broadcast_publication`]); evaluation allocates nothing.
//!
//! The semantics are Centrifugo's: a leaf (`op` empty) compares the tag `key` with `cmp` —
//! `eq`, `neq`, `in`, `nin`, `ex`, `nex`, `sw` (starts with), `ew` (ends with), `ct`
//! (contains), and the numeric `gt`, `gte`, `lt`, `lte` (decimal numbers, compared exactly; a
//! tag that is not a number does not match) — and `and` / `or` / `not` combine `nodes`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::protocol::FilterNode;

/// How deep a filter may nest, and how many nodes it may have: a filter is evaluated for every
/// publication of the channel, so its cost is bounded.
pub const MAX_DEPTH: usize = 16;
/// See [`MAX_DEPTH`].
pub const MAX_NODES: usize = 256;

/// What is wrong with a tags filter (as Centrifugo checks it at subscribe time): said in the
/// log, while the client gets 107 (bad request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Deeper than [`MAX_DEPTH`] or with more than [`MAX_NODES`] nodes.
    #[error("filter too large (at most {MAX_DEPTH} levels and {MAX_NODES} nodes)")]
    TooLarge,
    /// A leaf without a comparison.
    #[error("leaf node must have cmp set")]
    MissingCmp,
    /// A leaf without a key (only `ex`/`nex` may omit it).
    #[error("leaf node requires key")]
    MissingKey,
    /// A comparison given the wrong operands (`val` for one value, `vals` for a set, none
    /// for `ex`/`nex`): the comparison and what it needs.
    #[error("{cmp} comparison {needs}")]
    Operands {
        /// The comparison (`eq`, `in`, `ex`…).
        cmp: String,
        /// What it requires or must not have.
        needs: &'static str,
    },
    /// A comparison Herald does not know.
    #[error("unknown comparison operator: {0}")]
    UnknownCmp(String),
    /// An `and`/`or` without children, or a `not` without exactly one.
    #[error("{op} node must have {needs}")]
    Children {
        /// The operator.
        op: String,
        /// How many children it needs.
        needs: &'static str,
    },
    /// An operator Herald does not know.
    #[error("invalid op: {0}")]
    UnknownOp(String),
}

/// Checks that `filter` is well formed (as Centrifugo does at subscribe time).
pub fn validate(filter: &FilterNode) -> Result<(), FilterError> {
    let mut nodes = 0;
    validate_node(filter, 1, &mut nodes)
}

fn validate_node(f: &FilterNode, depth: usize, nodes: &mut usize) -> Result<(), FilterError> {
    *nodes += 1;
    if depth > MAX_DEPTH || *nodes > MAX_NODES {
        return Err(FilterError::TooLarge);
    }
    match f.op.as_str() {
        "" => {
            let has_val = !f.val.is_empty();
            let has_vals = !f.vals.is_empty();
            match f.cmp.as_str() {
                "" => return Err(FilterError::MissingCmp),
                "eq" | "neq" | "sw" | "ew" | "ct" | "gt" | "gte" | "lt" | "lte" => {
                    if !has_val {
                        return Err(FilterError::Operands {
                            cmp: f.cmp.clone(),
                            needs: "requires val",
                        });
                    }
                    if has_vals {
                        return Err(FilterError::Operands {
                            cmp: f.cmp.clone(),
                            needs: "must not use vals",
                        });
                    }
                }
                "in" | "nin" => {
                    if !has_vals {
                        return Err(FilterError::Operands {
                            cmp: f.cmp.clone(),
                            needs: "requires non-empty vals",
                        });
                    }
                    if has_val {
                        return Err(FilterError::Operands {
                            cmp: f.cmp.clone(),
                            needs: "must not use val",
                        });
                    }
                }
                "ex" | "nex" => {
                    if has_val || has_vals {
                        return Err(FilterError::Operands {
                            cmp: f.cmp.clone(),
                            needs: "must not use val or vals",
                        });
                    }
                }
                other => return Err(FilterError::UnknownCmp(other.to_owned())),
            }
            if f.key.is_empty() && f.cmp != "ex" && f.cmp != "nex" {
                return Err(FilterError::MissingKey);
            }
            Ok(())
        }
        "and" | "or" => {
            if f.nodes.is_empty() {
                return Err(FilterError::Children {
                    op: f.op.clone(),
                    needs: "at least one child",
                });
            }
            f.nodes
                .iter()
                .try_for_each(|c| validate_node(c, depth + 1, nodes))
        }
        "not" => match f.nodes.as_slice() {
            [child] => validate_node(child, depth + 1, nodes),
            _ => Err(FilterError::Children {
                op: f.op.clone(),
                needs: "exactly one child",
            }),
        },
        other => Err(FilterError::UnknownOp(other.to_owned())),
    }
}

/// Whether a publication with `tags` passes `filter` (which [`validate`] accepted; anything
/// malformed does not match).
pub fn matches(filter: &FilterNode, tags: &BTreeMap<String, String>) -> bool {
    match filter.op.as_str() {
        "" => {
            let value = tags.get(&filter.key).map(String::as_str);
            let val = filter.val.as_str();
            match filter.cmp.as_str() {
                "eq" => value == Some(val),
                "neq" => value != Some(val),
                // As in Centrifugo, an absent tag compares as "" here.
                "in" => filter.vals.iter().any(|v| v == value.unwrap_or("")),
                "nin" => !filter.vals.iter().any(|v| v == value.unwrap_or("")),
                "ex" => value.is_some(),
                "nex" => value.is_none(),
                "sw" => value.is_some_and(|v| v.starts_with(val)),
                "ew" => value.is_some_and(|v| v.ends_with(val)),
                "ct" => value.is_some_and(|v| v.contains(val)),
                cmp @ ("gt" | "gte" | "lt" | "lte") => {
                    let Some(order) = value.and_then(|v| compare_decimal(v, val)) else {
                        return false;
                    };
                    match cmp {
                        "gt" => order == Ordering::Greater,
                        "gte" => order != Ordering::Less,
                        "lt" => order == Ordering::Less,
                        _ => order != Ordering::Greater,
                    }
                }
                _ => false,
            }
        }
        "and" => filter.nodes.iter().all(|c| matches(c, tags)),
        "or" => filter.nodes.iter().any(|c| matches(c, tags)),
        "not" => match filter.nodes.as_slice() {
            [child] => !matches(child, tags),
            _ => false,
        },
        _ => false,
    }
}

/// A decimal number as written: sign, integer digits without leading zeros, fraction digits
/// without trailing zeros.
struct Decimal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
}

impl<'a> Decimal<'a> {
    /// Parses `[+-]digits[.digits]` (at least one digit); `None` for anything else.
    fn parse(s: &'a str) -> Option<Decimal<'a>> {
        let (negative, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || !digits(frac) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        // -0 is 0.
        let negative = negative && !(int.is_empty() && frac.is_empty());
        Some(Decimal {
            negative,
            int,
            frac,
        })
    }

    fn cmp_magnitude(&self, other: &Decimal<'_>) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            // Without trailing zeros, fraction digits compare as strings.
            .then_with(|| self.frac.cmp(other.frac))
    }
}

/// Compares two decimal numbers exactly (no floating point rounding); `None` when either is
/// not a number.
fn compare_decimal(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (Decimal::parse(a)?, Decimal::parse(b)?);
    Some(match (a.negative, b.negative) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => a.cmp_magnitude(&b),
        (true, true) => b.cmp_magnitude(&a),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(key: &str, cmp: &str, val: &str) -> FilterNode {
        FilterNode {
            key: key.into(),
            cmp: cmp.into(),
            val: val.into(),
            ..FilterNode::default()
        }
    }

    fn set(key: &str, cmp: &str, vals: &[&str]) -> FilterNode {
        FilterNode {
            key: key.into(),
            cmp: cmp.into(),
            vals: vals.iter().map(|v| v.to_string()).collect(),
            ..FilterNode::default()
        }
    }

    fn node(op: &str, nodes: Vec<FilterNode>) -> FilterNode {
        FilterNode {
            op: op.into(),
            nodes,
            ..FilterNode::default()
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn leaves_compare_like_centrifugo() {
        let t = tags(&[("ticker", "BTC-USD"), ("price", "100.50")]);
        let cases = [
            (leaf("ticker", "eq", "BTC-USD"), true),
            (leaf("ticker", "eq", "ETH"), false),
            (leaf("missing", "eq", "x"), false),
            (leaf("ticker", "neq", "ETH"), true),
            (leaf("missing", "neq", "x"), true),
            (set("ticker", "in", &["ETH", "BTC-USD"]), true),
            (set("ticker", "nin", &["ETH", "BTC-USD"]), false),
            (set("missing", "nin", &["x"]), true),
            (set("missing", "in", &["", "x"]), true),
            (leaf("ticker", "ex", ""), true),
            (leaf("missing", "nex", ""), true),
            (leaf("ticker", "sw", "BTC"), true),
            (leaf("ticker", "ew", "USD"), true),
            (leaf("ticker", "ct", "C-U"), true),
            (leaf("missing", "ct", "x"), false),
            (leaf("price", "gt", "100.5"), false),
            (leaf("price", "gte", "100.5"), true),
            (leaf("price", "lt", "100.51"), true),
            (leaf("price", "lte", "-3"), false),
            (leaf("ticker", "gt", "1"), false),
            (leaf("missing", "lt", "1"), false),
        ];
        for (filter, want) in cases {
            assert!(validate(&filter).is_ok(), "{filter:?}");
            assert_eq!(matches(&filter, &t), want, "{filter:?}");
        }
    }

    #[test]
    fn and_or_not_combine() {
        let t = tags(&[("a", "1"), ("b", "2")]);
        let yes = leaf("a", "eq", "1");
        let no = leaf("b", "eq", "3");
        assert!(matches(&node("and", vec![yes.clone(), yes.clone()]), &t));
        assert!(!matches(&node("and", vec![yes.clone(), no.clone()]), &t));
        assert!(matches(&node("or", vec![no.clone(), yes.clone()]), &t));
        assert!(!matches(&node("or", vec![no.clone()]), &t));
        assert!(matches(&node("not", vec![no.clone()]), &t));
        assert!(!matches(&node("not", vec![yes]), &t));
        assert!(
            !matches(&node("not", vec![]), &t),
            "malformed never matches"
        );
    }

    #[test]
    fn numbers_compare_exactly() {
        use Ordering::*;
        let cases = [
            ("10", "9", Greater),
            ("9.99", "10", Less),
            ("007", "7.000", Equal),
            ("-1", "0", Less),
            ("-0", "0", Equal),
            ("-2.5", "-2.25", Less),
            ("12345678901234567891", "12345678901234567890", Greater),
            ("0.1", ".1", Equal),
            ("+3", "3", Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_decimal(a, b), Some(want), "{a} vs {b}");
        }
        for bad in ["", "-", ".", "1e3", "1.2.3", "abc", "0x10", " 1"] {
            assert_eq!(compare_decimal(bad, "1"), None, "{bad:?}");
        }
    }

    #[test]
    fn malformed_filters_are_refused() {
        let bad = [
            FilterNode::default(),
            leaf("k", "eq", ""),
            leaf("", "eq", "v"),
            leaf("k", "like", "v"),
            set("k", "in", &[]),
            FilterNode {
                val: "v".into(),
                ..set("k", "in", &["v"])
            },
            leaf("k", "ex", "v"),
            node("and", vec![]),
            node("not", vec![leaf("k", "ex", ""), leaf("k", "ex", "")]),
            node("xor", vec![leaf("k", "ex", "")]),
            node("and", vec![leaf("k", "eq", "")]),
        ];
        for filter in bad {
            assert!(validate(&filter).is_err(), "{filter:?}");
        }
        assert!(validate(&leaf("", "ex", "")).is_ok());
    }

    #[test]
    fn a_huge_filter_is_refused() {
        let mut deep = leaf("k", "ex", "");
        for _ in 0..MAX_DEPTH {
            deep = node("not", vec![deep]);
        }
        assert_eq!(validate(&deep), Err(FilterError::TooLarge));
        let wide = node("or", vec![leaf("k", "ex", ""); MAX_NODES]);
        assert_eq!(validate(&wide), Err(FilterError::TooLarge));
        let fits = node("or", vec![leaf("k", "ex", ""); MAX_NODES - 1]);
        assert!(validate(&fits).is_ok());
    }
}
