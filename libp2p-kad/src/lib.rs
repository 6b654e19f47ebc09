//! The libp2p Kademlia DHT, `/ipfs/kad/1.0.0`, as a state machine without I/O.
//!
//! [`Kad`] holds the routing table ([`RoutingTable`]: 256 k-buckets, liveness-checked
//! eviction), the record store ([`RecordStore`], [`MemoryStore`]) and the running queries
//! (iterative lookups, `alpha` requests in flight). It opens no socket, spawns no task and
//! reads no clock: the host feeds it calls that carry `now`, and pulls what it must do with
//! [`Kad::poll_action`], what the application learns with [`Kad::poll_event`], and when to
//! call [`Kad::handle_timeout`] with [`Kad::poll_timeout`]. The wire format is in [`proto`].
//!
//! The [`service`] module (default feature `service`) is the host service described below,
//! ready made: [`KadService`] for the host builder and a [`KadHandle`] with async methods.
//!
//! # What a host service does with it
//!
//! - **Start**: [`Kad::new`]; [`Kad::set_listen_addrs`] with our listen addresses (again
//!   when they change); in [`Mode::Server`] register a stream handler for [`PROTOCOL`]
//!   and list it in identify, in [`Mode::Client`] do neither. Bootstrap peers go in with
//!   [`Kad::add_peer`] (the first one schedules a bootstrap at once).
//! - **Connection events**: identify results go to [`Kad::on_identify`] (whether the peer
//!   lists `/ipfs/kad/1.0.0`, and its listen addresses); connections opened and closed to
//!   [`Kad::on_connection`]; a peer that cannot be dialed at all to [`Kad::remove_peer`].
//! - **Inbound stream**: read frames (length checked against [`Config::max_message_size`]
//!   before reading the body: [`proto::decode_length`], then [`proto::decode_body`]), hand
//!   each to [`Kad::handle_request`], write back the `Some` answer with
//!   [`proto::encode_frame`]; on `Err`, reset the stream. Streams may carry several requests.
//! - **Actions** ([`Kad::poll_action`] after every call): [`Action::SendRequest`]: open a
//!   stream to the peer (dialing its addresses), write the frame, read one frame back if
//!   asked, by the action's deadline; report with [`Kad::on_response`], [`Kad::on_sent`] or
//!   [`Kad::on_request_failed`]. [`Action::CheckLiveness`]: ping the peer, report with
//!   [`Kad::on_liveness`].
//! - **Time**: call [`Kad::handle_timeout`] when [`Kad::poll_timeout`] says.
//! - **Application**: [`Kad::find_node`], [`Kad::get_providers`], [`Kad::start_providing`],
//!   [`Kad::get_value`], [`Kad::put_value`], [`Kad::bootstrap`] return a [`QueryId`]; the
//!   result comes as [`Event::QueryFinished`] from [`Kad::poll_event`].
//!
//! ```
//! use std::time::{Duration, Instant};
//! use libp2p_core::PeerId;
//! use libp2p_kad::{proto, Action, Config, Event, Kad, QueryResult};
//!
//! let now = Instant::now();
//! let (a, b) = (PeerId::random(), PeerId::random());
//! let mut alice = Kad::new(a, Config::default(), now);
//! let mut bob = Kad::new(b, Config::default(), now);
//! bob.add_peer(a, &["/ip4/10.0.0.1/tcp/4001".parse().unwrap()], now);
//!
//! let query = bob.find_node(&PeerId::random(), now).unwrap();
//! // The host's part: carry each request to its peer and the answer back, as bytes.
//! while let Some(action) = bob.poll_action() {
//!     if let Action::SendRequest { id, peer, message, .. } = action {
//!         assert_eq!(peer, a);
//!         let mut wire = Vec::new();
//!         proto::encode_frame(&message, &mut wire);
//!         let (request, _) = proto::decode_frame(&wire, 16 * 1024).unwrap().unwrap();
//!         let answer = alice.handle_request(&b, request, now).unwrap().unwrap();
//!         bob.on_response(id, answer, now + Duration::from_millis(20));
//!     }
//! }
//! while let Some(event) = bob.poll_event() {
//!     if let Event::QueryFinished { id, result: QueryResult::FindNode(found), .. } = event {
//!         assert_eq!(id, query);
//!         // Alice answered, knowing nobody else: she is the closest there is.
//!         assert_eq!(found.unwrap()[0].id, a);
//!     }
//! }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod behaviour;
pub mod config;
pub mod error;
pub mod kbucket;
pub mod key;
pub mod proto;
pub mod query;
#[cfg(feature = "service")]
pub mod service;
pub mod store;

pub use behaviour::{Action, Event, Kad, QueryId, QueryResult, QueryStats, RequestId};
pub use config::{Config, Mode};
pub use error::{
    AddProviderError, BootstrapError, DecodeError, FindNodeError, GetProvidersError, GetValueError,
    InboundError, PutValueError, RecordRejected, StartError, StoreError,
};
pub use kbucket::{InsertOutcome, RoutingTable};
pub use key::{sha256_multihash, Distance, Key};
pub use proto::{PeerInfo, PROTOCOL};
#[cfg(feature = "service")]
pub use service::{
    FindPeerError, KadHandle, KadService, QueryError, RequestError, ServiceConfig,
    PROTECTED_CLOSEST, PROTECT_TAG,
};
pub use store::{
    AcceptAll, MemoryStore, MemoryStoreConfig, ProviderRecord, Record, RecordStore, RecordValidator,
};
