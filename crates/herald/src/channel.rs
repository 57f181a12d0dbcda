//! Channel names: validation and the special strings of Centrifugo's conventions, shared by
//! the client protocol and the server HTTP API.
//!
//! The strings come from the config ([`Naming`], built by `ChannelConfig::naming`); with
//! Centrifugo's defaults:
//!
//! * `:` — namespace boundary (`channel.namespace_boundary`). After removing one leading
//!   private prefix, the part before the first boundary is the namespace (`chat:room1` →
//!   `chat`, `$secret:x` → `secret`); a name without it belongs to the default namespace `""`,
//!   governed by the `channel.without_namespace` options.
//! * `$` — private prefix (`channel.private_prefix`): a name starting with it needs a
//!   subscription token. Empty: no channel is private.
//! * `#` — user boundary (`channel.user_boundary`): the part after the **last** one is a list of
//!   the only users who may subscribe (`inbox:#bob`, `dialog:#alice,bob`), separated by `,`
//!   (`channel.user_separator`; empty: the part is one user id). It only has this meaning in
//!   namespaces with user-limited channels enabled; otherwise it is ordinary text. An empty user
//!   boundary turns user-limited channels off.
//!
//! These follow Centrifugo's `internal/config/container.go` (`namespaceName`, `IsPrivateChannel`,
//! `IsUserLimited`, `UserAllowed`), except that an empty user id is never allowed by a user
//! list.
//!
//! Validation here is what applies to every channel: non-empty, at most `max_len` bytes
//! (Centrifugo's `channel.max_length`, default 255) and no control characters. Centrifugo
//! additionally accepts only ASCII names unless the namespace sets a `channel_regex` (matched
//! against [`ParsedChannel::rest`]); callers enforcing that rule use
//! [`ParsedChannel::is_ascii`].

use std::fmt;

use crate::protocol::Error;

/// Separates the namespace from the rest of the name (default of `channel.namespace_boundary`).
pub const NAMESPACE_BOUNDARY: &str = ":";
/// Starts the user list of a user-limited channel, the last occurrence counting (default of
/// `channel.user_boundary`).
pub const USER_BOUNDARY: &str = "#";
/// Separates user ids in the user list (default of `channel.user_separator`).
pub const USER_SEPARATOR: &str = ",";
/// Marks a private channel, which needs a subscription token (default of
/// `channel.private_prefix`).
pub const PRIVATE_PREFIX: &str = "$";

/// The strings that give a channel name its structure, from `channel.private_prefix`,
/// `channel.namespace_boundary`, `channel.user_boundary` and `channel.user_separator`. Every
/// place that splits a channel name takes one, so that a config that changes them changes
/// who may subscribe everywhere at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Naming<'a> {
    /// Marks a private channel; empty = no channel is private.
    pub private_prefix: &'a str,
    /// Separates the namespace; empty = no namespaces (config validation refuses it).
    pub namespace_boundary: &'a str,
    /// Starts the user list; empty = no user-limited channels.
    pub user_boundary: &'a str,
    /// Separates users in the list; empty = the list is one user id.
    pub user_separator: &'a str,
}

/// Centrifugo's default naming: `$`, `:`, `#`, `,`.
pub const DEFAULT_NAMING: Naming<'static> = Naming {
    private_prefix: PRIVATE_PREFIX,
    namespace_boundary: NAMESPACE_BOUNDARY,
    user_boundary: USER_BOUNDARY,
    user_separator: USER_SEPARATOR,
};

impl Default for Naming<'_> {
    fn default() -> Self {
        DEFAULT_NAMING
    }
}
/// Default maximum channel name length in bytes (`channel.max_length`).
pub const DEFAULT_MAX_LENGTH: usize = 255;

/// Why a channel name is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ChannelError {
    /// The name is empty.
    #[error("empty channel name")]
    Empty,
    /// The name is longer than allowed (in bytes).
    #[error("channel name is {len} bytes, more than the maximum of {max}")]
    TooLong {
        /// Length of the name in bytes.
        len: usize,
        /// The maximum allowed.
        max: usize,
    },
    /// The name contains a control character (e.g. `\n`, `\0`, DEL).
    #[error("channel name contains control character {0:?}")]
    ControlCharacter(char),
}

impl ChannelError {
    /// The reply error a client gets for this channel name, as the reference server answers:
    /// 102 "unknown channel" for an empty name, 107 "bad request" otherwise.
    ///
    /// (Commands other than subscribe with an empty channel are a protocol violation the
    /// client code answers with disconnect 3501 instead.)
    pub fn to_error(&self) -> Error {
        match self {
            ChannelError::Empty => Error::UNKNOWN_CHANNEL,
            ChannelError::TooLong { .. } | ChannelError::ControlCharacter(_) => Error::BAD_REQUEST,
        }
    }
}

/// A validated channel name split into its meaningful parts; borrows the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParsedChannel<'a> {
    /// The whole channel name.
    pub name: &'a str,
    /// The namespace (`""` = default namespace).
    pub namespace: &'a str,
    /// The name without its namespace part (and without the `$` prefix when namespaced); the
    /// whole name when there is no namespace. This is what a namespace `channel_regex` checks.
    pub rest: &'a str,
    /// The name starts with the private prefix: subscribing needs a subscription token.
    pub private: bool,
    /// The user list after the last user boundary, if the name has one.
    pub user_part: Option<&'a str>,
    /// Separates the users in `user_part` (empty: it is one user id).
    user_separator: &'a str,
}

/// Validates `name` (non-empty, at most `max_len` bytes — 0 means [`DEFAULT_MAX_LENGTH`] — and
/// no control characters) and splits it into namespace, private flag and user list with
/// Centrifugo's default naming. The server uses [`parse_with`] and the config's naming.
pub fn parse(name: &str, max_len: usize) -> Result<ParsedChannel<'_>, ChannelError> {
    parse_with(name, max_len, DEFAULT_NAMING)
}

/// [`parse`] with the given naming (`ChannelConfig::naming`).
pub fn parse_with<'a>(
    name: &'a str,
    max_len: usize,
    naming: Naming<'a>,
) -> Result<ParsedChannel<'a>, ChannelError> {
    validate(name, max_len)?;
    Ok(split(name, naming))
}

/// Validates `name` without splitting it; see [`parse`].
pub fn validate(name: &str, max_len: usize) -> Result<(), ChannelError> {
    if name.is_empty() {
        return Err(ChannelError::Empty);
    }
    let max = if max_len == 0 {
        DEFAULT_MAX_LENGTH
    } else {
        max_len
    };
    if name.len() > max {
        return Err(ChannelError::TooLong {
            len: name.len(),
            max,
        });
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(ChannelError::ControlCharacter(c));
    }
    Ok(())
}

/// Splits a name (assumed valid) into its parts.
fn split<'a>(name: &'a str, naming: Naming<'a>) -> ParsedChannel<'a> {
    let prefix = naming.private_prefix;
    let private = !prefix.is_empty() && name.starts_with(prefix);
    let trimmed = if private { &name[prefix.len()..] } else { name };
    let boundary = naming.namespace_boundary;
    let (namespace, rest) = match trimmed
        .split_once(boundary)
        .filter(|_| !boundary.is_empty())
    {
        Some((namespace, rest)) => (namespace, rest),
        None => ("", name),
    };
    let user_boundary = naming.user_boundary;
    let user_part = if user_boundary.is_empty() {
        None
    } else {
        name.rfind(user_boundary)
            .map(|at| &name[at + user_boundary.len()..])
    };
    ParsedChannel {
        name,
        namespace,
        rest,
        private,
        user_part,
        user_separator: naming.user_separator,
    }
}

impl<'a> ParsedChannel<'a> {
    /// Whether the name carries a `#` user list. It restricts subscribers only in namespaces
    /// that enable user-limited channels.
    pub fn is_user_limited(&self) -> bool {
        self.user_part.is_some()
    }

    /// The user ids of the `#` list, in order (may include empty strings, which match nobody);
    /// nothing for names without `#`.
    pub fn users(&self) -> impl Iterator<Item = &'a str> + 'a {
        let separator = self.user_separator;
        self.user_part.into_iter().flat_map(move |part| {
            let (one, many) = if separator.is_empty() {
                (Some(part), None)
            } else {
                (None, Some(part.split(separator)))
            };
            one.into_iter().chain(many.into_iter().flatten())
        })
    }

    /// Whether the `#` user list names `user`. False for an empty `user` (anonymous) and for
    /// names without a user list — such names grant nobody access by themselves; the
    /// namespace's permissions decide.
    pub fn allows_user(&self, user: &str) -> bool {
        !user.is_empty() && self.users().any(|allowed| allowed == user)
    }

    /// Whether the whole name is ASCII (Centrifugo's rule for namespaces without
    /// `channel_regex`).
    pub fn is_ascii(&self) -> bool {
        self.name.is_ascii()
    }
}

impl fmt::Display for ParsedChannel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The personal channel of `user`: the user boundary and `user` in the default namespace,
/// `namespace`, the namespace boundary, the user boundary and `user` otherwise (`#42`,
/// `personal:#42` by default; Centrifugo's `subscribe_to_user_personal_channel`).
pub fn personal_channel(namespace: &str, user: &str, naming: Naming<'_>) -> String {
    let mut channel = String::with_capacity(namespace.len() + user.len() + 2);
    if !namespace.is_empty() {
        channel.push_str(namespace);
        channel.push_str(naming.namespace_boundary);
    }
    channel.push_str(naming.user_boundary);
    channel.push_str(user);
    channel
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> ParsedChannel<'_> {
        parse(name, DEFAULT_MAX_LENGTH).unwrap()
    }

    #[test]
    fn default_namespace() {
        let c = p("news");
        assert_eq!((c.name, c.namespace, c.rest), ("news", "", "news"));
        assert!(!c.private && !c.is_user_limited());
        assert_eq!(c.users().count(), 0);
        assert!(!c.allows_user("bob"));
        assert_eq!(c.to_string(), "news");
    }

    #[test]
    fn namespace_is_split_at_the_first_colon() {
        let c = p("chat:room:1");
        assert_eq!((c.namespace, c.rest), ("chat", "room:1"));
        let c = p(":x");
        assert_eq!((c.namespace, c.rest), ("", "x"));
        let c = p("chat:");
        assert_eq!((c.namespace, c.rest), ("chat", ""));
    }

    #[test]
    fn private_prefix() {
        let c = p("$secret");
        assert!(c.private);
        assert_eq!((c.namespace, c.rest), ("", "$secret"));
        let c = p("$chat:room");
        assert!(c.private);
        assert_eq!((c.namespace, c.rest), ("chat", "room"));
        // Only a leading `$` counts, and only one is removed for the namespace.
        let c = p("chat:$room");
        assert!(!c.private);
        assert_eq!((c.namespace, c.rest), ("chat", "$room"));
        let c = p("$$a:b");
        assert!(c.private);
        assert_eq!(c.namespace, "$a");
    }

    #[test]
    fn user_limited_channels() {
        let c = p("inbox:#bob");
        assert_eq!(c.namespace, "inbox");
        assert!(c.is_user_limited());
        assert_eq!(c.users().collect::<Vec<_>>(), ["bob"]);
        assert!(c.allows_user("bob"));
        assert!(!c.allows_user("alice"));
        assert!(!c.allows_user("bo"));

        let c = p("dialog:#alice,bob");
        assert_eq!(c.users().collect::<Vec<_>>(), ["alice", "bob"]);
        assert!(c.allows_user("alice") && c.allows_user("bob"));
        assert!(!c.allows_user("alice,bob"));
        assert!(!c.allows_user("carol"));

        // The last `#` starts the list.
        let c = p("a#x#y,z");
        assert_eq!(c.user_part, Some("y,z"));
        assert!(!c.allows_user("x"));
        assert!(c.allows_user("z"));

        // Default namespace personal channel.
        let c = p("#42");
        assert_eq!((c.namespace, c.user_part), ("", Some("42")));
        assert!(c.allows_user("42"));
    }

    #[test]
    fn empty_user_is_never_allowed() {
        for name in ["chat#", "chat#,bob", "chat#bob,", "chat#,"] {
            let c = p(name);
            assert!(c.is_user_limited());
            assert!(!c.allows_user(""), "{name}");
        }
        assert!(p("chat#,bob").allows_user("bob"));
        assert_eq!(p("chat#").users().collect::<Vec<_>>(), [""]);
        assert!(!p("news").allows_user(""));
    }

    #[test]
    fn private_user_limited_channel() {
        let c = p("$dm:#alice,bob");
        assert!(c.private && c.is_user_limited());
        assert_eq!((c.namespace, c.rest), ("dm", "#alice,bob"));
        assert!(c.allows_user("alice"));
    }

    #[test]
    fn validation() {
        assert_eq!(parse("", 255), Err(ChannelError::Empty));
        let long = "a".repeat(256);
        assert_eq!(
            parse(&long, 255),
            Err(ChannelError::TooLong { len: 256, max: 255 })
        );
        assert!(parse(&long[..255], 255).is_ok());
        assert!(parse(&long, 300).is_ok());
        // 0 means the default maximum.
        assert!(parse(&long[..255], 0).is_ok());
        assert_eq!(
            parse(&long, 0),
            Err(ChannelError::TooLong { len: 256, max: 255 })
        );
        // The limit counts bytes.
        let wide = "é".repeat(128);
        assert_eq!(
            parse(&wide, 255),
            Err(ChannelError::TooLong { len: 256, max: 255 })
        );
        for bad in ["a\nb", "a\0", "\tx", "x\u{7f}", "x\u{85}", "\r"] {
            assert!(
                matches!(parse(bad, 255), Err(ChannelError::ControlCharacter(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse("a\nb", 255),
            Err(ChannelError::ControlCharacter('\n'))
        );
        // Spaces, punctuation and non-ASCII are allowed here; ASCII is checked on demand.
        let c = p("chat:hello world!*?");
        assert!(c.is_ascii());
        let c = p("chat:привет");
        assert!(!c.is_ascii());
        assert_eq!(validate("ok", 2), Ok(()));
        assert_eq!(
            validate("ok!", 2),
            Err(ChannelError::TooLong { len: 3, max: 2 })
        );
    }

    #[test]
    fn errors_map_to_reply_errors() {
        assert_eq!(ChannelError::Empty.to_error(), Error::UNKNOWN_CHANNEL);
        assert_eq!(
            ChannelError::TooLong { len: 1, max: 0 }.to_error(),
            Error::BAD_REQUEST
        );
        assert_eq!(
            ChannelError::ControlCharacter('\0').to_error(),
            Error::BAD_REQUEST
        );
        assert_eq!(
            ChannelError::TooLong { len: 300, max: 255 }.to_string(),
            "channel name is 300 bytes, more than the maximum of 255"
        );
    }

    #[test]
    fn personal_channels() {
        assert_eq!(personal_channel("", "42", DEFAULT_NAMING), "#42");
        assert_eq!(
            personal_channel("personal", "42", DEFAULT_NAMING),
            "personal:#42"
        );
        let name = personal_channel("personal", "42", DEFAULT_NAMING);
        let c = p(&name);
        assert_eq!(c.namespace, "personal");
        assert!(c.allows_user("42"));
    }

    const CUSTOM: Naming<'static> = Naming {
        private_prefix: "secret-",
        namespace_boundary: "/",
        user_boundary: "@",
        user_separator: "+",
    };

    fn q(name: &str) -> ParsedChannel<'_> {
        parse_with(name, DEFAULT_MAX_LENGTH, CUSTOM).unwrap()
    }

    #[test]
    fn a_custom_private_prefix_makes_channels_private() {
        let c = q("secret-payroll");
        assert!(c.private);
        assert_eq!((c.namespace, c.rest), ("", "secret-payroll"));
        let c = q("secret-hr/payroll");
        assert!(c.private);
        assert_eq!((c.namespace, c.rest), ("hr", "payroll"));
        // `$` is now ordinary text.
        assert!(!q("$payroll").private);
        // No prefix: nothing is private.
        let none = Naming {
            private_prefix: "",
            ..DEFAULT_NAMING
        };
        assert!(!parse_with("$x", 255, none).unwrap().private);
    }

    #[test]
    fn a_custom_namespace_boundary_splits_the_namespace() {
        let c = q("chat/room:1");
        assert_eq!((c.namespace, c.rest), ("chat", "room:1"));
        assert_eq!(q("chat:room").namespace, "");
    }

    #[test]
    fn custom_user_boundary_and_separator_limit_users() {
        let c = q("dm/@alice+bob");
        assert_eq!(c.namespace, "dm");
        assert!(c.is_user_limited());
        assert_eq!(c.users().collect::<Vec<_>>(), ["alice", "bob"]);
        assert!(c.allows_user("alice") && c.allows_user("bob"));
        assert!(!c.allows_user("alice+bob"));
        // `#` and `,` are ordinary text now.
        let c = q("dm/#alice,bob");
        assert!(!c.is_user_limited());
        assert!(!c.allows_user("alice"));
        // No separator: the part after the boundary is one user id.
        let one = Naming {
            user_separator: "",
            ..DEFAULT_NAMING
        };
        let c = parse_with("dm:#alice,bob", 255, one).unwrap();
        assert_eq!(c.users().collect::<Vec<_>>(), ["alice,bob"]);
        assert!(c.allows_user("alice,bob") && !c.allows_user("alice"));
        // No user boundary: no user-limited channels.
        let off = Naming {
            user_boundary: "",
            ..DEFAULT_NAMING
        };
        assert!(
            !parse_with("inbox:#bob", 255, off)
                .unwrap()
                .is_user_limited()
        );
        assert_eq!(personal_channel("dm", "42", CUSTOM), "dm/@42");
    }
}
