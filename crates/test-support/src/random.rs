//! Random values for tests (secrets, ids, port ranges, fault seeds): the
//! netfault crate's, so there is one source of them; not for cryptography.

/// A random lowercase hex string of `len` characters (test secrets,
/// item names; not for cryptography).
pub fn random_hex(len: usize) -> String {
    sticky_netfault::random::hex(len)
}

/// 64 random bits from the std hasher's per-process random keys.
pub fn random_u64() -> u64 {
    sticky_netfault::random::u64()
}
