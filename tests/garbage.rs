//! Garbage input never panics: random and mutated frames go through every decoder, and every
//! request that still decodes goes through the tree's prepare/apply and reads.
//! Default 100,000 frames; ZRAFT_GARBAGE_FRAMES=N for more.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use zraft::jute::*;
use zraft::tree::{AuthIds, DataTree, Pending, PrepareCtx, TreeConfig};

fn golden_payloads() -> Vec<Vec<u8>> {
    include_str!("golden/frames.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| hex::decode(l.rsplit(' ').next().unwrap()).unwrap())
        .collect()
}

fn mutate(rng: &mut ChaCha8Rng, mut b: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.gen_range(1..=4) {
        match rng.gen_range(0..6) {
            0 if !b.is_empty() => {
                let i = rng.gen_range(0..b.len());
                b[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if !b.is_empty() => {
                let i = rng.gen_range(0..b.len());
                b[i] = rng.gen();
            }
            2 if !b.is_empty() => {
                let n = rng.gen_range(0..b.len());
                b.truncate(n);
            }
            3 => {
                let i = rng.gen_range(0..=b.len());
                b.insert(i, rng.gen());
            }
            4 if b.len() >= 12 => {
                // Overwrite an int with a hostile length.
                let i = rng.gen_range(0..b.len() - 4);
                let v: i32 = [-1, -2, i32::MIN, i32::MAX, 0x7fff_fff0, 0x100000, 1 << 20][rng.gen_range(0..7)];
                b[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            _ => {
                let mut extra = vec![0u8; rng.gen_range(0..16)];
                rng.fill_bytes(&mut extra);
                b.extend(extra);
            }
        }
    }
    b
}

#[test]
fn garbage_never_panics() {
    let n: usize = std::env::var("ZRAFT_GARBAGE_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let seeds = golden_payloads();
    let mut tree = DataTree::new();
    let mut pending = Pending::new();
    let auth: AuthIds = [Id {
        scheme: "ip".into(),
        id: "127.0.0.1".into(),
    }]
    .into_iter()
    .collect();
    let (mut decoded, mut rejected, mut applied) = (0usize, 0usize, 0usize);
    let mut stream = FrameDecoder::new(DEFAULT_MAX_BUFFER);
    for i in 0..n {
        let bytes = if i % 4 == 0 {
            let mut b = vec![0u8; rng.gen_range(0..128)];
            rng.fill_bytes(&mut b);
            b
        } else {
            let base = seeds[rng.gen_range(0..seeds.len())].clone();
            mutate(&mut rng, base)
        };
        let _ = ConnectRequest::from_bytes(&bytes);
        let _ = ConnectResponse::from_bytes(&bytes);
        let op = OpCode::ALL[rng.gen_range(0..OpCode::ALL.len())];
        let _ = ReplyFrame::from_bytes(&bytes, |_| Some(op));
        match RequestFrame::from_bytes(&bytes) {
            Ok(f) => {
                decoded += 1;
                // Re-encoding a decoded frame must itself decode to the same frame.
                assert_eq!(RequestFrame::from_bytes(&f.to_bytes()).as_ref(), Ok(&f));
                let ctx = PrepareCtx {
                    session_id: 1,
                    auth: &auth,
                    zxid: tree.last_zxid() + 1,
                    time: i as i64,
                    config: TreeConfig::default(),
                };
                if f.request.is_write() && !matches!(f.request, Request::CloseSession) {
                    let e = tree.prepare(&mut pending, &ctx, &f.request);
                    tree.apply(&e);
                    pending.applied(e.zxid);
                    applied += 1;
                } else {
                    let _ = tree.read(1, &auth, &f.request);
                }
            }
            Err(_) => rejected += 1,
        }
        // The same bytes as a stream chunk: a bad length kills the stream, so start a new one.
        stream.push(&bytes);
        loop {
            match stream.next_frame() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => {
                    stream = FrameDecoder::new(DEFAULT_MAX_BUFFER);
                    break;
                }
            }
        }
    }
    tree.check_invariants().unwrap();
    eprintln!("garbage: {n} frames, {decoded} decoded as requests ({applied} prepared+applied), {rejected} rejected");
    assert_eq!(decoded + rejected, n);
    assert!(rejected > n / 2, "mutations should mostly be rejected");
    assert!(decoded > 0, "some mutations should still decode and reach the tree");
}
