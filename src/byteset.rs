//! Owns: the 256-entry byte tables the parsers look characters up in (token, reg-name, ...),
//! built at compile time.
//! Must not: hold anything but `const` builders.

/// A byte table: ASCII digits and lowercase letters, uppercase letters when `upper`, and
/// every byte of `extra`.
pub const fn byte_set(upper: bool, extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_digit() || b.is_ascii_lowercase() || (upper && b.is_ascii_uppercase());
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}
