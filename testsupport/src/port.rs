//! Loopback ports for tests to hand to a server they start.
//!
//! A port from `bind(":0")` comes from the kernel's ephemeral range, the same range it
//! hands every outgoing connection and every other `bind(":0")`, and that docker's `-P`
//! publishes from; so between the test's check and its server's bind, someone else often
//! takes it. Ports below that range are only ever taken by name, so one picked at random
//! there and found free stays free unless another test draws the same number.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Below the kernel's default ephemeral range (32768-60999) and above the ports services
/// commonly register.
const LOW: u16 = 20000;
const HIGH: u16 = 32000;

/// A loopback TCP port, outside the ephemeral range, that is free right now.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = LOW + (next_random() % u64::from(HIGH - LOW)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}-{HIGH}");
}

/// splitmix64 over a per-process sequence seeded by the clock and the pid: tests in
/// parallel processes draw different numbers.
fn next_random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 32);
    let mut z = STATE
        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        .wrapping_add(seed);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        for &p in &ports {
            assert!((LOW..HIGH).contains(&p), "{p}");
            TcpListener::bind(("127.0.0.1", p)).expect("still free");
        }
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 40, "draws repeat too often: {ports:?}");
    }
}
