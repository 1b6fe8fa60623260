//! Dictionary loader (arriving).
