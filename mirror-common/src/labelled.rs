//! [`labelled!`](crate::labelled): the one way every enum whose variants
//! become metric label values (or log keys) is written, in the kernel's
//! crate and the agent alike.

/// Declares an enum of unit variants, each with a stable snake_case label,
/// and gives it:
/// * `COUNT`: the number of variants, counted by the compiler;
/// * `ALL`: every variant in declaration order (so `variant as usize` is its
///   index in `ALL` and in per-variant arrays);
/// * `as_str()`: the label, and `Display` printing it.
///
/// ```
/// mirror_common::labelled! {
///     /// Why something happened.
///     pub enum Why {
///         /// Because.
///         Because => "because",
///         Otherwise => "otherwise",
///     }
/// }
/// assert_eq!(Why::COUNT, 2);
/// assert_eq!(Why::ALL[1].as_str(), "otherwise");
/// assert_eq!(Why::Because.to_string(), "because");
/// ```
#[macro_export]
macro_rules! labelled {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$doc:meta])* $variant:ident => $label:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$doc])* $variant, )*
        }

        impl $name {
            /// Number of variants.
            pub const COUNT: usize = [$($label),*].len();
            /// Every variant, in declaration order.
            pub const ALL: [$name; Self::COUNT] = [$($name::$variant,)*];

            /// Stable snake_case label (a metric label value).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $label, )*
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
