//! The `flat_options!` macro: an option group that is also written flat beside a key
//! (Centrifugo's `squash`), as namespaces and the subscription token are.

/// Defines two structs from one list of option fields: `$Opts` (the options alone) and `$Wrapper`
/// (one key field plus the options), where the wrapper reads and writes the key and the options
/// FLAT in the same object (Centrifugo's `squash`), with unknown keys refused and exact error
/// paths kept (serde's `flatten` would lose both).
macro_rules! flat_options {
    (
        $(#[$ometa:meta])*
        options $Opts:ident;
        $(#[$wmeta:meta])*
        wrapper $Wrapper:ident { $(#[$kmeta:meta])* $key:ident : $kty:ty, $optfield:ident }
        via $Raw:ident = $raw_name:literal;
        fields {
            $( $(#[$fmeta:meta])* $field:ident : $fty:ty ),* $(,)?
        }
    ) => {
        $(#[$ometa])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $Opts {
            $( $(#[$fmeta])* pub $field: $fty, )*
        }

        $(#[$wmeta])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(from = $raw_name, into = $raw_name)]
        pub struct $Wrapper {
            $(#[$kmeta])*
            pub $key: $kty,
            /// The options, written flat beside the key in the config file.
            pub $optfield: $Opts,
        }

        #[derive(Default, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct $Raw {
            $key: $kty,
            $( $(#[$fmeta])* $field: $fty, )*
        }

        impl From<$Raw> for $Wrapper {
            fn from(raw: $Raw) -> Self {
                $Wrapper { $key: raw.$key, $optfield: $Opts { $( $field: raw.$field, )* } }
            }
        }

        impl From<$Wrapper> for $Raw {
            fn from(w: $Wrapper) -> Self {
                let o = w.$optfield;
                $Raw { $key: w.$key, $( $field: o.$field, )* }
            }
        }
    };
}

pub(super) use flat_options;
