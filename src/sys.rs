//! Process-level helpers that belong to no layer.

/// Hands the heap pages freed since startup back to the kernel. Parsing a
/// config with 100k local users, loading the replica and a sync round's
/// pages peak well above what stays live; glibc keeps the freed pages
/// otherwise, and they would count as the server's resident memory for as
/// long as it runs.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
