//! Glob patterns, the one matcher for names that users select with wildcards: channel
//! patterns of the server API's `channels` command ([`Glob::new`]) and `client.allowed_origins`
//! entries ([`Glob::stars`]).
//!
//! Syntax of [`Glob::new`]: `*` matches any run of characters (including none and including
//! `:`), `?` one character, `[abc]`, `[a-z]` and `[!abc]` (or `[^abc]`) one character of (or
//! not of) a set, `\` makes the next character literal. An empty pattern matches everything.
//! Matching is greedy with backtracking to the last `*` only, so a hostile pattern costs at
//! most pattern × name steps.

/// Why a pattern given to [`Glob::new`] is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// The last character is `\`, which escapes nothing: double it to match a backslash.
    #[error("pattern \"{pattern}\" ends with an escape character")]
    TrailingEscape {
        /// The pattern as given.
        pattern: String,
    },
    /// A `[` starts a character class that no `]` closes: close it, or write `\[`.
    #[error("pattern \"{pattern}\" has an unclosed '['")]
    UnclosedClass {
        /// The pattern as given.
        pattern: String,
    },
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
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
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
                '\\' => Token::Literal(chars.next().ok_or_else(|| GlobError::TrailingEscape {
                    pattern: pattern.to_owned(),
                })?),
                '[' => Self::class(&mut chars).ok_or_else(|| GlobError::UnclosedClass {
                    pattern: pattern.to_owned(),
                })?,
                c => Token::Literal(c),
            };
            tokens.push(token);
        }
        Ok(Glob { tokens })
    }

    /// A pattern where only `*` is special (any run of characters) and every other character
    /// is itself: `client.allowed_origins` entries, where `?` and `[` are ordinary URL text.
    pub fn stars(pattern: &str) -> Glob {
        let mut tokens = Vec::with_capacity(pattern.len());
        for c in pattern.chars() {
            let token = if c == '*' {
                Token::AnyRun
            } else {
                Token::Literal(c)
            };
            if token == Token::AnyRun && tokens.last() == Some(&Token::AnyRun) {
                continue;
            }
            tokens.push(token);
        }
        Glob { tokens }
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
        assert!(
            Glob::new("chat[")
                .unwrap_err()
                .to_string()
                .contains("unclosed")
        );
        assert!(Glob::new("[a-").is_err());
        assert!(Glob::new("x\\").unwrap_err().to_string().contains("escape"));
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
    fn stars_only_treats_star_as_special() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "https://example.com", true),
            ("https://*.example.com", "https://a.example.com", true),
            ("https://*.example.com", "https://example.com", false),
            ("http://localhost:*", "http://localhost:3000", true),
            ("http://a?b", "http://a?b", true),
            ("http://a?b", "http://axb", false),
            ("http://[x]", "http://[x]", true),
            ("http://[x]", "http://x", false),
            ("a\\*", "a\\bc", true),
            ("**x", "abx", true),
            ("a*b*c", "acb", false),
        ];
        for (p, text, expected) in cases {
            assert_eq!(Glob::stars(p).matches(text), *expected, "{p:?} vs {text:?}");
        }
    }
}
