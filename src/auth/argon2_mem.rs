//! argon2 with one working area per thread, reused. The argon2 crate's own
//! `verify_password` allocates its ~19 MiB of blocks at every call; glibc
//! then keeps the freed areas around, and RSS climbed to ~290 MiB on one
//! thread after twenty verifications (measured). Here each pool thread
//! allocates its area once, so memory is `threads` × 19 MiB, whatever the
//! load. Meant for the threads of [`super::pool::CpuPool`].

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;

thread_local! {
    /// This thread's working area, grown to the largest `m` seen.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Hashes into `out` with this thread's area.
fn hash_into(a: &Argon2<'_>, params: &Params, password: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    BLOCKS.with(|b| {
        let mut blocks = b.borrow_mut();
        let need = params.block_count();
        if blocks.len() < need {
            blocks.resize(need, Block::new());
        }
        a.hash_password_into_with_memory(password, salt, out, &mut blocks[..need])
            .is_ok()
    })
}

/// True when `password` matches the PHC string `phc` (any argon2 variant,
/// version and parameters the string names). The comparison is constant
/// time; a string that does not parse matches nothing.
pub fn verify(phc: &str, password: &[u8]) -> bool {
    let Ok(h) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&h.salt, &h.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(h.algorithm.as_str()) else {
        return false;
    };
    let version = match h.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&h) else {
        return false;
    };
    let expected = expected.as_ref();
    let mut out = [0u8; Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let a = Argon2::new(algorithm, version, params.clone());
    hash_into(&a, &params, password, salt.as_ref(), out) && bool::from(out.ct_eq(expected))
}

/// A PHC string for `password` with a random salt and the default
/// parameters (argon2id, m=19456, t=2, p=1), as `password_hash` takes.
pub fn hash(password: &[u8]) -> Option<String> {
    let salt: [u8; 16] = rand::random();
    let params = Params::default();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let a = Argon2::new(Algorithm::default(), Version::default(), params.clone());
    if !hash_into(&a, &params, password, &salt, &mut out) {
        return None;
    }
    let h = PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(&params).ok()?,
        salt: Some(Salt::new(&salt).ok()?),
        hash: Some(Output::new(&out).ok()?),
    };
    Some(h.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[test]
    fn agrees_with_the_argon2_crate_both_ways() {
        let theirs = Argon2::default().hash_password(b"wonderland").unwrap().to_string();
        assert!(verify(&theirs, b"wonderland"));
        assert!(!verify(&theirs, b"wonderlanD"));
        let ours = hash(b"wonderland").unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{ours}");
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"wonderland", &parsed).is_ok());
        assert!(verify(&ours, b"wonderland"));
        assert_ne!(hash(b"wonderland").unwrap(), ours, "salts are random");
    }

    #[test]
    fn other_variants_and_parameters_and_garbage() {
        let params = Params::new(4096, 3, 1, Some(24)).unwrap();
        let a = Argon2::new(Algorithm::Argon2i, Version::V0x10, params);
        let h = a.hash_password(b"pw").unwrap().to_string();
        assert!(h.starts_with("$argon2i$v=16$m=4096,t=3,p=1$"), "{h}");
        assert!(verify(&h, b"pw"));
        assert!(!verify(&h, b"px"));
        for bad in [
            "",
            "$argon2id$",
            "$md5$xyz",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ",
        ] {
            assert!(!verify(bad, b"pw"), "{bad}");
        }
    }
}
