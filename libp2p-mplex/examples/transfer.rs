//! One stream carries `TRANSFER_MIB` MiB (default 64) over an in-memory pipe, on a
//! single-threaded runtime: the fixed workload for instruction counts of the mplex hot path
//! (`valgrind --tool=callgrind target/release/examples/transfer`).

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_core::StreamMuxer;
use libp2p_mplex::Mplex;

const CHUNK: usize = 64 * 1024;

fn main() {
    let mib: usize = std::env::var("TRANSFER_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let total = mib << 20;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let received = runtime.block_on(async move {
        let (a, b) = libp2p_core::testkit::memory_pair();
        let (dialer, driver) = Mplex::default().connect(a);
        tokio::spawn(driver);
        let (listener, driver) = Mplex::default().connect(b);
        tokio::spawn(driver);
        let sender = tokio::spawn(async move {
            let mut out = dialer.open().await.expect("open");
            let chunk = vec![0x5a; CHUNK];
            let mut left = total;
            while left > 0 {
                let n = left.min(CHUNK);
                out.write_all(&chunk[..n]).await.expect("write");
                left -= n;
            }
            out.close().await.expect("close");
            dialer
        });
        let mut inbound = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; CHUNK];
        let mut n = 0;
        loop {
            let k = inbound.read(&mut buf).await.expect("read");
            if k == 0 {
                break;
            }
            n += k;
        }
        drop(sender.await.expect("sender"));
        n
    });
    assert_eq!(received, total);
    println!("{received} bytes");
}
