//! Metric names of the hol, migration, goodput and lost-flight handshake
//! workloads, in one place: the
//! workloads write them, `headline` reads them (the report crate, which does
//! not depend on the harness, spells the same strings). Definitions:
//! docs/methodology.md.

// hol (paced): per request.
/// Scheduled time → last byte (queueing included).
pub const LATENCY_MS: &str = "latency_ms";
/// Scheduled time → the request could start (waiting for a free connection).
pub const QUEUE_MS: &str = "queue_ms";
/// Request start → last byte.
pub const SERVICE_MS: &str = "service_ms";
// hol (paced): derived against the lossless twin (headline).
pub const LOSSLESS_SERVICE_MS: &str = "lossless_service_ms";
pub const LOSSLESS_QUEUE_MS: &str = "lossless_queue_ms";
pub const LOSSY_QUEUE_MS: &str = "lossy_queue_ms";
pub const LOSS_DELAY_P50_MS: &str = "loss_delay_p50_ms";
pub const LOSS_DELAY_P99_MS: &str = "loss_delay_p99_ms";
pub const HOL_INFLATION: &str = "hol_inflation";
pub const HOL_DELAYED_SHARE: &str = "hol_delayed_share";

// migration.
pub const SURVIVED: &str = "survived";
pub const NEW_HANDSHAKE: &str = "new_handshake";
pub const COMPLETED: &str = "completed";
pub const COMPLETION_MS: &str = "completion_ms";
pub const DISRUPTION_MS: &str = "disruption_ms";
pub const RECOVERY_MS: &str = "recovery_ms";
pub const UNANSWERED: &str = "unanswered";
/// TCP recovery in parts: event → the client gave up on the connection.
pub const DETECT_MS: &str = "detect_ms";
/// Gave up → new connection ready (handshake, failed attempts included).
pub const RECONNECT_MS: &str = "reconnect_ms";
/// New connection ready → first byte of the resumed (Range) response.
pub const RESUME_MS: &str = "resume_ms";
/// The standing queue toward the client at the event.
pub const QUEUE_AT_EVENT_PACKETS: &str = "queue_at_event_packets";
pub const QUEUE_AT_EVENT_MS: &str = "queue_at_event_ms";
/// Packets the NAT dropped after the event (sent to the old binding).
pub const NAT_DROPPED_PACKETS: &str = "nat_dropped_packets";

// goodput.
/// The object: body bits ÷ (last byte − request start).
pub const GOODPUT_MBPS: &str = "goodput_mbps";
/// Steady state: bytes over time after the first RTTs of a long transfer.
pub const STEADY_GOODPUT_MBPS: &str = "steady_goodput_mbps";
pub const STEADY_WINDOW_MS: &str = "steady_window_ms";
pub const RATE_RATIO: &str = "rate_ratio";
/// HTTP/1.0 only: the object's own connection set-up (TCP + TLS).
pub const SETUP_MS: &str = "setup_ms";
pub const COMPLETION_EXCL_SETUP_MS: &str = "completion_excl_setup_ms";
pub const GOODPUT_EXCL_SETUP_MBPS: &str = "goodput_excl_setup_mbps";

// handshake, lost-flight modes: measured at the link (`link_metrics::record_chosen`).
/// Packets the link's `drop-nth` dropped (both directions; `_UP`, `_DOWN` each).
pub const CHOSEN_DROPS: &str = "chosen_drops";
pub const CHOSEN_DROPS_UP: &str = "chosen_drops_up";
pub const CHOSEN_DROPS_DOWN: &str = "chosen_drops_down";
/// Per flow: the dropped packet → its resend, both as offered to the link.
pub const RETRANSMIT_GAP_MS: &str = "retransmit_gap_ms";

// Every cell on the user-space link: the first response's critical path
// (`link_metrics::record`, netem's `flows::ResponsePath`).
/// Round trips on the path (the server's turns).
pub const LINK_ROUND_TRIPS: &str = "link_round_trips";
/// The path's time in the link, and in units of the link's configured RTT.
pub const LINK_WIRE_MS: &str = "link_wire_ms";
pub const LINK_WIRE_RTTS: &str = "link_wire_rtts";
/// The endpoints' turns on the path.
pub const LINK_CLIENT_MS: &str = "link_client_ms";
pub const LINK_SERVER_MS: &str = "link_server_ms";
