//! MD5 over many independent messages at once.
//!
//! One MD5 compression is a chain of 64 dependent steps, so a single
//! message keeps a core's arithmetic units mostly idle: about 90 ns a block
//! here, whatever the implementation. A batch of requests has many
//! independent messages (a Message-Authenticator per request, a Response
//! Authenticator per reply); with AVX2 eight of them advance together, one
//! per 32-bit lane, for little more than the cost of one. Without AVX2
//! (or for a single message) each is compressed on its own by the `md-5`
//! crate, with the same result.
//!
//! A message may continue from a state that already took some whole
//! blocks: HMAC-MD5's inner and outer hashes start from the key's padded
//! block, worked out once per client ([`super::ClientSecret`]).

use md5::block_api::compress;

/// MD5's initial state (RFC 1321 §3.3).
pub const IV: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Messages to hash together. Kept and reused by its owner, so that a
/// batch allocates nothing once the vectors have grown.
#[derive(Default)]
pub struct Md5Batch {
    /// Every message's blocks, padding included, one message after another.
    blocks: Vec<[u8; 64]>,
    jobs: Vec<Job>,
}

#[derive(Clone, Copy)]
struct Job {
    first: usize,
    count: usize,
    state: [u32; 4],
}

impl Md5Batch {
    pub fn clear(&mut self) {
        self.blocks.clear();
        self.jobs.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Queues the digest of `parts`, one after another, continuing from
    /// `state` into which `done` bytes (whole blocks) were already
    /// compressed; [`IV`] and 0 for a plain MD5. Returns the index that
    /// [`Md5Batch::digest`] takes after [`Md5Batch::run`].
    pub fn push(&mut self, state: [u32; 4], done: u64, parts: &[&[u8]]) -> usize {
        let first = self.blocks.len();
        let mut block = [0u8; 64];
        let mut fill = 0;
        let mut total = done;
        for part in parts {
            total += part.len() as u64;
            let mut rest = *part;
            while !rest.is_empty() {
                let take = rest.len().min(64 - fill);
                block[fill..fill + take].copy_from_slice(&rest[..take]);
                fill += take;
                rest = &rest[take..];
                if fill == 64 {
                    self.blocks.push(block);
                    fill = 0;
                }
            }
        }
        // RFC 1321 §3.1-3.2: a 1 bit, zeros to 56 mod 64, the bit length.
        block[fill] = 0x80;
        fill += 1;
        if fill > 56 {
            block[fill..].fill(0);
            self.blocks.push(block);
            fill = 0;
        }
        block[fill..56].fill(0);
        block[56..].copy_from_slice(&total.wrapping_mul(8).to_le_bytes());
        self.blocks.push(block);
        self.jobs.push(Job {
            first,
            count: self.blocks.len() - first,
            state,
        });
        self.jobs.len() - 1
    }

    /// Hashes every queued message.
    pub fn run(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if self.jobs.len() > 1 && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { x86::run(&self.blocks, &mut self.jobs) };
            return;
        }
        self.run_one_by_one();
    }

    fn run_one_by_one(&mut self) {
        for j in &mut self.jobs {
            compress(&mut j.state, &self.blocks[j.first..j.first + j.count]);
        }
    }

    /// The digest of message `i` (its final state, little-endian), once
    /// [`Md5Batch::run`] has run: also the input of an HMAC's outer hash.
    pub fn digest(&self, i: usize) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (o, w) in out.chunks_exact_mut(4).zip(self.jobs[i].state) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Job;

    const LANES: usize = 8;
    const IDLE: usize = usize::MAX;

    /// Eight lanes, each taking the next message when its own is done.
    #[target_feature(enable = "avx2")]
    pub(super) fn run(blocks: &[[u8; 64]], jobs: &mut [Job]) {
        // Lane l's state is word l of each of a, b, c, d.
        let mut st = [[0u32; LANES]; 4];
        let mut job = [IDLE; LANES];
        let mut at = [0usize; LANES];
        let mut next = 0;
        let zero = [0u8; 64];
        loop {
            let mut busy = false;
            for l in 0..LANES {
                if job[l] == IDLE && next < jobs.len() {
                    job[l] = next;
                    at[l] = jobs[next].first;
                    for (w, s) in st.iter_mut().zip(jobs[next].state) {
                        w[l] = s;
                    }
                    next += 1;
                }
                busy |= job[l] != IDLE;
            }
            if !busy {
                return;
            }
            let input: [&[u8; 64]; LANES] =
                std::array::from_fn(|l| if job[l] == IDLE { &zero } else { &blocks[at[l]] });
            compress8(&mut st, &input);
            for l in 0..LANES {
                if job[l] == IDLE {
                    continue;
                }
                at[l] += 1;
                let j = &mut jobs[job[l]];
                if at[l] == j.first + j.count {
                    for (s, w) in j.state.iter_mut().zip(&st) {
                        *s = w[l];
                    }
                    job[l] = IDLE;
                }
            }
        }
    }

    #[inline(always)]
    fn word(block: &[u8; 64], i: usize) -> i32 {
        i32::from_le_bytes([block[4 * i], block[4 * i + 1], block[4 * i + 2], block[4 * i + 3]])
    }

    #[target_feature(enable = "avx2")]
    fn load(lanes: &[u32; LANES]) -> __m256i {
        // SAFETY: reads 32 bytes from an array of 32 bytes; unaligned load.
        unsafe { _mm256_loadu_si256(lanes.as_ptr().cast()) }
    }

    #[target_feature(enable = "avx2")]
    fn store(v: __m256i, lanes: &mut [u32; LANES]) {
        // SAFETY: writes 32 bytes into an array of 32 bytes; unaligned store.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v) }
    }

    /// One block of each of eight messages (RFC 1321 §3.4).
    #[target_feature(enable = "avx2")]
    fn compress8(st: &mut [[u32; LANES]; 4], input: &[&[u8; 64]; LANES]) {
        let m: [__m256i; 16] = std::array::from_fn(|i| {
            _mm256_set_epi32(
                word(input[7], i),
                word(input[6], i),
                word(input[5], i),
                word(input[4], i),
                word(input[3], i),
                word(input[2], i),
                word(input[1], i),
                word(input[0], i),
            )
        });
        let ones = _mm256_set1_epi32(-1);
        let f = |b, c, d| _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d)));
        let g = |b, c, d| _mm256_xor_si256(c, _mm256_and_si256(d, _mm256_xor_si256(b, c)));
        let h = |b, c, d| _mm256_xor_si256(_mm256_xor_si256(b, c), d);
        let i = |b, c, d| _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, ones)));
        macro_rules! step {
            ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:literal, $s:literal, $r:literal) => {
                let t = _mm256_add_epi32(
                    _mm256_add_epi32($a, $f($b, $c, $d)),
                    _mm256_add_epi32($m, _mm256_set1_epi32($k as u32 as i32)),
                );
                $a = _mm256_add_epi32(
                    $b,
                    _mm256_or_si256(_mm256_slli_epi32::<$s>(t), _mm256_srli_epi32::<$r>(t)),
                );
            };
        }
        let (a0, b0, c0, d0) = (load(&st[0]), load(&st[1]), load(&st[2]), load(&st[3]));
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        step!(f, a, b, c, d, m[0], 0xd76aa478, 7, 25);
        step!(f, d, a, b, c, m[1], 0xe8c7b756, 12, 20);
        step!(f, c, d, a, b, m[2], 0x242070db, 17, 15);
        step!(f, b, c, d, a, m[3], 0xc1bdceee, 22, 10);
        step!(f, a, b, c, d, m[4], 0xf57c0faf, 7, 25);
        step!(f, d, a, b, c, m[5], 0x4787c62a, 12, 20);
        step!(f, c, d, a, b, m[6], 0xa8304613, 17, 15);
        step!(f, b, c, d, a, m[7], 0xfd469501, 22, 10);
        step!(f, a, b, c, d, m[8], 0x698098d8, 7, 25);
        step!(f, d, a, b, c, m[9], 0x8b44f7af, 12, 20);
        step!(f, c, d, a, b, m[10], 0xffff5bb1, 17, 15);
        step!(f, b, c, d, a, m[11], 0x895cd7be, 22, 10);
        step!(f, a, b, c, d, m[12], 0x6b901122, 7, 25);
        step!(f, d, a, b, c, m[13], 0xfd987193, 12, 20);
        step!(f, c, d, a, b, m[14], 0xa679438e, 17, 15);
        step!(f, b, c, d, a, m[15], 0x49b40821, 22, 10);
        step!(g, a, b, c, d, m[1], 0xf61e2562, 5, 27);
        step!(g, d, a, b, c, m[6], 0xc040b340, 9, 23);
        step!(g, c, d, a, b, m[11], 0x265e5a51, 14, 18);
        step!(g, b, c, d, a, m[0], 0xe9b6c7aa, 20, 12);
        step!(g, a, b, c, d, m[5], 0xd62f105d, 5, 27);
        step!(g, d, a, b, c, m[10], 0x02441453, 9, 23);
        step!(g, c, d, a, b, m[15], 0xd8a1e681, 14, 18);
        step!(g, b, c, d, a, m[4], 0xe7d3fbc8, 20, 12);
        step!(g, a, b, c, d, m[9], 0x21e1cde6, 5, 27);
        step!(g, d, a, b, c, m[14], 0xc33707d6, 9, 23);
        step!(g, c, d, a, b, m[3], 0xf4d50d87, 14, 18);
        step!(g, b, c, d, a, m[8], 0x455a14ed, 20, 12);
        step!(g, a, b, c, d, m[13], 0xa9e3e905, 5, 27);
        step!(g, d, a, b, c, m[2], 0xfcefa3f8, 9, 23);
        step!(g, c, d, a, b, m[7], 0x676f02d9, 14, 18);
        step!(g, b, c, d, a, m[12], 0x8d2a4c8a, 20, 12);
        step!(h, a, b, c, d, m[5], 0xfffa3942, 4, 28);
        step!(h, d, a, b, c, m[8], 0x8771f681, 11, 21);
        step!(h, c, d, a, b, m[11], 0x6d9d6122, 16, 16);
        step!(h, b, c, d, a, m[14], 0xfde5380c, 23, 9);
        step!(h, a, b, c, d, m[1], 0xa4beea44, 4, 28);
        step!(h, d, a, b, c, m[4], 0x4bdecfa9, 11, 21);
        step!(h, c, d, a, b, m[7], 0xf6bb4b60, 16, 16);
        step!(h, b, c, d, a, m[10], 0xbebfbc70, 23, 9);
        step!(h, a, b, c, d, m[13], 0x289b7ec6, 4, 28);
        step!(h, d, a, b, c, m[0], 0xeaa127fa, 11, 21);
        step!(h, c, d, a, b, m[3], 0xd4ef3085, 16, 16);
        step!(h, b, c, d, a, m[6], 0x04881d05, 23, 9);
        step!(h, a, b, c, d, m[9], 0xd9d4d039, 4, 28);
        step!(h, d, a, b, c, m[12], 0xe6db99e5, 11, 21);
        step!(h, c, d, a, b, m[15], 0x1fa27cf8, 16, 16);
        step!(h, b, c, d, a, m[2], 0xc4ac5665, 23, 9);
        step!(i, a, b, c, d, m[0], 0xf4292244, 6, 26);
        step!(i, d, a, b, c, m[7], 0x432aff97, 10, 22);
        step!(i, c, d, a, b, m[14], 0xab9423a7, 15, 17);
        step!(i, b, c, d, a, m[5], 0xfc93a039, 21, 11);
        step!(i, a, b, c, d, m[12], 0x655b59c3, 6, 26);
        step!(i, d, a, b, c, m[3], 0x8f0ccc92, 10, 22);
        step!(i, c, d, a, b, m[10], 0xffeff47d, 15, 17);
        step!(i, b, c, d, a, m[1], 0x85845dd1, 21, 11);
        step!(i, a, b, c, d, m[8], 0x6fa87e4f, 6, 26);
        step!(i, d, a, b, c, m[15], 0xfe2ce6e0, 10, 22);
        step!(i, c, d, a, b, m[6], 0xa3014314, 15, 17);
        step!(i, b, c, d, a, m[13], 0x4e0811a1, 21, 11);
        step!(i, a, b, c, d, m[4], 0xf7537e82, 6, 26);
        step!(i, d, a, b, c, m[11], 0xbd3af235, 10, 22);
        step!(i, c, d, a, b, m[2], 0x2ad7d2bb, 15, 17);
        step!(i, b, c, d, a, m[9], 0xeb86d391, 21, 11);
        store(_mm256_add_epi32(a, a0), &mut st[0]);
        store(_mm256_add_epi32(b, b0), &mut st[1]);
        store(_mm256_add_epi32(c, c0), &mut st[2]);
        store(_mm256_add_epi32(d, d0), &mut st[3]);
    }
}

#[cfg(test)]
mod tests {
    use md5::{Digest, Md5};

    use super::*;

    /// Deterministic bytes for the tests (no RNG needed).
    fn bytes(seed: u32, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    #[test]
    fn every_length_around_the_padding_edges_matches_md5() {
        // Lengths on both sides of 55/56/64 and of several blocks, hashed
        // together so that lanes finish at different blocks.
        let msgs: Vec<Vec<u8>> = (0..200).map(|n| bytes(n as u32, n)).collect();
        let mut batch = Md5Batch::default();
        for m in &msgs {
            batch.push(IV, 0, &[m]);
        }
        batch.run();
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(batch.digest(i), <[u8; 16]>::from(Md5::digest(m)), "length {i}");
        }
    }

    #[test]
    fn parts_are_one_message_and_one_alone_is_the_same() {
        let m = bytes(7, 150);
        let mut batch = Md5Batch::default();
        let split = batch.push(IV, 0, &[&m[..3], &[], &m[3..64], &m[64..]]);
        let whole = batch.push(IV, 0, &[&m]);
        batch.run();
        let want = <[u8; 16]>::from(Md5::digest(&m));
        assert_eq!(batch.digest(split), want);
        assert_eq!(batch.digest(whole), want);
        // A batch of one takes the scalar path.
        batch.clear();
        assert!(batch.is_empty());
        batch.push(IV, 0, &[&m]);
        batch.run();
        assert_eq!(batch.digest(0), want);
    }

    #[test]
    fn a_message_continues_from_a_state() {
        // MD5(prefix ‖ rest) from the state after the 64-byte prefix.
        let prefix = bytes(1, 64);
        let rest = bytes(2, 90);
        let mut state = IV;
        compress(&mut state, &[prefix.clone().try_into().unwrap()]);
        let mut batch = Md5Batch::default();
        for _ in 0..9 {
            batch.push(state, 64, &[&rest]);
        }
        batch.run();
        let want = <[u8; 16]>::from(Md5::digest([prefix, rest].concat()));
        for i in 0..9 {
            assert_eq!(batch.digest(i), want);
        }
    }

    #[test]
    fn the_scalar_path_agrees_with_the_lanes() {
        let msgs: Vec<Vec<u8>> = (0..40).map(|n| bytes(100 + n, 17 * n as usize)).collect();
        let mut lanes = Md5Batch::default();
        let mut scalar = Md5Batch::default();
        for m in &msgs {
            lanes.push(IV, 0, &[m]);
            scalar.push(IV, 0, &[m]);
        }
        lanes.run();
        scalar.run_one_by_one();
        for i in 0..msgs.len() {
            assert_eq!(lanes.digest(i), scalar.digest(i));
        }
    }
}
