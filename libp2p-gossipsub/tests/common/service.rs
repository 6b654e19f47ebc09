//! What the service tests (`tests/service.rs`, `tests/hostile.rs`) share; each includes this
//! file alone.

use std::time::Duration;

use futures::StreamExt;
use libp2p_gossipsub::{Received, Subscription};

/// The bound on every wait of these tests (they finish in a few seconds).
pub const WAIT: Duration = Duration::from_secs(20);

/// The next message of `sub`, within [`WAIT`], none lost before it.
pub async fn next_message(sub: &mut Subscription) -> Received {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message in time")
        .expect("the subscription goes on")
        .expect("no message lost")
}
