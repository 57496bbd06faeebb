//! Runtime CPU-feature dispatch for hot loops.
//!
//! [`with_avx2!`] compiles a function body twice, once for baseline x86-64 and once with AVX2
//! enabled, and picks at run time. Both copies perform the same IEEE operations in the same
//! order (Rust never contracts `a * b + c` into an FMA), so results are bit-identical whichever
//! copy runs: the vector width changes speed, not bytes.

/// Define `pub fn NAME(args) { body }` with an AVX2-compiled twin chosen at run time.
macro_rules! with_avx2 {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $body
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            fn baseline($($arg: $ty),*) $body
            baseline($($arg),*)
        }
    };
}

pub(crate) use with_avx2;
