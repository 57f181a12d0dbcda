//! `channels`: lists the channels that have subscribers on this node, with their subscriber
//! counts, optionally filtered by a glob pattern — for dashboards and debugging.
//!
//! `POST /api/channels {"pattern": "chat:*"}` →
//! `{"result": {"channels": {"chat:1": {"num_clients": 2}}}}`.
//!
//! Patterns: `*` matches any run of characters (including none and including `:`), `?` one
//! character, `[abc]`, `[a-z]` and `[!abc]` one character of (or not of) a set, `\` makes the
//! next character literal. An empty pattern matches every channel.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bad_request;
use crate::node::Node;
use crate::protocol::{self, nullable};

/// Request of `channels`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChannelsRequest {
    /// Glob pattern the channel names must match; empty = all.
    #[serde(deserialize_with = "nullable")]
    pub pattern: String,
}

/// Result of `channels`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChannelsResult {
    /// Matching channels by name.
    pub channels: BTreeMap<String, ChannelInfo>,
}

/// What `channels` tells about one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChannelInfo {
    /// Connections subscribed to the channel on this node.
    pub num_clients: u32,
}

/// Lists the channels with subscribers that match `req.pattern`.
///
/// Errors: 107 for a malformed pattern (an unclosed `[` or a trailing `\`).
pub fn execute(node: &Node, req: ChannelsRequest) -> Result<ChannelsResult, protocol::Error> {
    let glob = Glob::new(&req.pattern).map_err(bad_request)?;
    let channels = node
        .hub()
        .channels()
        .into_iter()
        .filter(|(name, _)| glob.matches(name))
        .map(|(name, n)| {
            let num_clients = u32::try_from(n).unwrap_or(u32::MAX);
            (name, ChannelInfo { num_clients })
        })
        .collect();
    Ok(ChannelsResult { channels })
}

/// A compiled glob pattern (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyChar,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Literal(l) => *l == c,
            Token::AnyChar => true,
            Token::AnyRun => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
        }
    }
}

impl Glob {
    /// Compiles `pattern` (empty = match everything); the error says what is malformed.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Ok(Glob {
                tokens: vec![Token::AnyRun],
            });
        }
        let mut tokens = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => {
                    if tokens.last() == Some(&Token::AnyRun) {
                        continue;
                    }
                    Token::AnyRun
                }
                '?' => Token::AnyChar,
                '\\' => Token::Literal(chars.next().ok_or_else(|| {
                    format!("pattern \"{pattern}\" ends with an escape character")
                })?),
                '[' => Self::class(&mut chars)
                    .ok_or_else(|| format!("pattern \"{pattern}\" has an unclosed '['"))?,
                c => Token::Literal(c),
            };
            tokens.push(token);
        }
        Ok(Glob { tokens })
    }

    /// Parses a character class after its `[`; `None` when it is not closed.
    fn class(chars: &mut std::str::Chars<'_>) -> Option<Token> {
        let mut negated = false;
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let mut c = chars.next()?;
            if first && (c == '!' || c == '^') {
                negated = true;
                c = chars.next()?;
            } else if c == ']' && !first {
                return Some(Token::Class { negated, ranges });
            }
            first = false;
            if c == '\\' {
                c = chars.next()?;
            }
            // A range `a-z`, unless the '-' is the last character of the class.
            let mut ahead = chars.clone();
            if ahead.next() == Some('-') && ahead.clone().next().is_some_and(|n| n != ']') {
                let mut hi = ahead.next()?;
                if hi == '\\' {
                    hi = ahead.next()?;
                }
                *chars = ahead;
                ranges.push((c.min(hi), c.max(hi)));
            } else {
                ranges.push((c, c));
            }
        }
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        // Greedy matching with backtracking to the last `*` only: O(pattern × name) at worst.
        let text: Vec<char> = name.chars().collect();
        let (mut t, mut p) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.tokens.get(p) {
                Some(Token::AnyRun) => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(token) if token.matches(text[t]) => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        self.tokens[p..].iter().all(|t| *t == Token::AnyRun)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn glob_patterns() {
        let cases: &[(&str, &str, bool)] = &[
            ("", "", true),
            ("", "anything", true),
            ("news", "news", true),
            ("news", "newsy", false),
            ("*", "", true),
            ("*", "chat:1", true),
            ("chat:*", "chat:1", true),
            ("chat:*", "chat:", true),
            ("chat:*", "chats:1", false),
            ("*:1", "chat:1", true),
            ("*:1", "chat:12", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "abcabc", true),
            ("a*b*c", "acb", false),
            ("**x", "abx", true),
            ("?", "é", true),
            ("??", "a", false),
            ("user#?", "user#1", true),
            ("[abc]x", "bx", true),
            ("[abc]x", "dx", false),
            ("[!abc]x", "dx", true),
            ("[^abc]x", "ax", false),
            ("room[0-9]", "room7", true),
            ("room[0-9]", "roomA", false),
            ("[a-]", "-", true),
            ("[]a]", "]", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("a\\?c", "a?c", true),
            ("a\\?c", "abc", false),
            ("{a,b}", "{a,b}", true),
        ];
        for (p, name, expected) in cases {
            assert_eq!(glob(p).matches(name), *expected, "{p:?} vs {name:?}");
        }
    }

    #[test]
    fn malformed_patterns() {
        assert!(Glob::new("chat[").unwrap_err().contains("unclosed"));
        assert!(Glob::new("[a-").is_err());
        assert!(Glob::new("x\\").unwrap_err().contains("escape"));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let p = glob(&"*a".repeat(30));
        let name = "a".repeat(29) + "b";
        let started = std::time::Instant::now();
        assert!(!p.matches(&name));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn lists_matching_channels() {
        let node = node();
        let a = client(&node, "a", "alice");
        let b = client(&node, "b", "bob");
        node.hub().subscribe("chat:1", &a);
        node.hub().subscribe("chat:1", &b);
        node.hub().subscribe("chat:2", &a);
        node.hub().subscribe("news", &b);
        let all = execute(&node, ChannelsRequest::default()).unwrap();
        assert_eq!(all.channels.len(), 3);
        let chat = execute(
            &node,
            ChannelsRequest {
                pattern: "chat:*".into(),
            },
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&chat).unwrap(),
            r#"{"channels":{"chat:1":{"num_clients":2},"chat:2":{"num_clients":1}}}"#
        );
        let e = execute(
            &node,
            ChannelsRequest {
                pattern: "[".into(),
            },
        )
        .unwrap_err();
        assert_eq!(e.code, 107);
    }
}
