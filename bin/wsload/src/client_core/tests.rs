//! The client core driven by hand, without sockets or a clock: a fake server answers the
//! upgrade requests the core asks to send, and each test feeds the completions the kernel
//! would report and checks the actions and figures that come out.

use std::time::{Duration, Instant};

use ringcast_proto::{
    Decoder, HandshakeStatus, Message, OpCode, Role, close_payload, encode_frame, parse_upgrade,
};

use super::*;

const TIMEOUT: Duration = Duration::from_secs(2);

fn core(scenario: Scenario, epoch: Instant) -> ClientCore {
    let plan = AddrPlan::new("ws://127.0.0.1:9000-9001/ch-{ch}", "127.0.0.2", 2).unwrap();
    let config = ClientConfig {
        scenario,
        deflate: false,
        connect_timeout: TIMEOUT,
        epoch,
        resume: false,
        tls: None,
        tls_own_names: false,
    };
    ClientCore::new(config, plan, 4, 7)
}

/// A `--resume` core over two gateways (`:9000` and `:9100`).
fn resuming_core(scenario: Scenario, epoch: Instant) -> ClientCore {
    let plan = AddrPlan::new(
        "ws://127.0.0.1:9000/ch-{ch},ws://127.0.0.1:9100/ch-{ch}",
        "127.0.0.2",
        1,
    )
    .unwrap();
    let config = ClientConfig {
        scenario,
        deflate: false,
        connect_timeout: TIMEOUT,
        epoch,
        resume: true,
        tls: None,
        tls_own_names: false,
    };
    ClientCore::new(config, plan, 4, 7)
}

fn hold() -> Scenario {
    Scenario::Hold {
        expect_messages: None,
    }
}

fn actions(core: &mut ClientCore) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

/// Takes the pending send of `slot` (asserting it is the only action) and completes it.
fn sent_bytes(core: &mut ClientCore, slot: SlotRef, now: Instant) -> Vec<u8> {
    core.flush_sends();
    assert_eq!(actions(core), vec![Action::Send(slot)]);
    let bytes = core.unsent(slot.id).to_vec();
    core.on_send_done(slot, Ok(bytes.len() as u32), now);
    bytes
}

/// The server's 101 answer to the upgrade request `request`.
fn accept(request: &[u8]) -> Vec<u8> {
    match parse_upgrade(request) {
        Ok(HandshakeStatus::Done(upgrade)) => upgrade.response,
        other => panic!("not a complete upgrade request: {other:?}"),
    }
}

fn server_frame(op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, op, payload, None);
    out
}

/// The frames a client sent, as the server decodes them.
fn client_frames(bytes: &[u8]) -> Vec<String> {
    let mut decoder = Decoder::new(Role::Server, 1 << 16);
    let mut seen = Vec::new();
    decoder
        .feed(&mut bytes.to_vec(), &mut |m: Message<'_>| {
            seen.push(format!("{m:?}"));
        })
        .unwrap();
    seen
}

/// Starts connection `index` and returns its slot after the connect action.
fn start(core: &mut ClientCore, index: usize, now: Instant) -> SlotRef {
    core.start_connect(index, now);
    match actions(core).as_slice() {
        [Action::Connect { slot, .. }] => *slot,
        other => panic!("expected one connect, got {other:?}"),
    }
}

/// Starts connection `index`, completes its connect and the send of its upgrade request;
/// returns its slot, waiting for the server's answer.
fn requested(core: &mut ClientCore, index: usize, now: Instant) -> SlotRef {
    let slot = start(core, index, now);
    core.on_connect_done(slot, Ok(()), now);
    actions(core);
    sent_bytes(core, slot, now);
    slot
}

/// Completes the connect and the handshake of `slot`.
fn handshake(core: &mut ClientCore, slot: SlotRef, now: Instant) {
    core.on_connect_done(slot, Ok(()), now);
    assert_eq!(actions(core), vec![Action::ArmRecv(slot)]);
    let request = sent_bytes(core, slot, now);
    let mut response = accept(&request);
    core.on_recv(slot, Received::Bytes(&mut response), true, now, 0);
}

/// Connects, handshakes and opens connection `index`; returns its slot.
fn open(core: &mut ClientCore, index: usize, now: Instant) -> SlotRef {
    let slot = start(core, index, now);
    handshake(core, slot, now);
    slot
}

fn churn_every(interval: Duration) -> Scenario {
    Scenario::Churn {
        interval,
        fraction: 1.0,
    }
}

#[test]
fn connect_goes_to_the_planned_address() {
    let t0 = Instant::now();
    let mut c = core(hold(), t0);
    c.start_connect(3, t0);
    let [Action::Connect { slot, source, dest }] = actions(&mut c)[..] else {
        panic!("one connect");
    };
    assert_eq!(slot.id, 0);
    assert_eq!(source.to_string(), "127.0.0.2");
    assert_eq!(dest.to_string(), "127.0.0.1:9001");
    assert_eq!((c.live(), c.in_flight()), (1, 1));
    c.on_connect_done(slot, Ok(()), t0);
    actions(&mut c);
    let request = sent_bytes(&mut c, slot, t0);
    let text = String::from_utf8(request).unwrap();
    assert!(text.starts_with("GET /ch-1 HTTP/1.1\r\n"), "{text}");
    assert!(text.contains("Host: 127.0.0.1:9001\r\n"), "{text}");
}

#[test]
fn handshake_opens_and_counts_what_followed_the_101() {
    let t0 = Instant::now();
    let mut c = core(hold(), t0);
    let slot = start(&mut c, 0, t0);
    c.on_connect_done(slot, Ok(()), t0);
    actions(&mut c);
    let request = sent_bytes(&mut c, slot, t0);
    let mut response = accept(&request);
    response.extend(server_frame(OpCode::Text, b"0:1000:abc"));
    let (head, tail) = response.split_at_mut(10);
    let later = t0 + Duration::from_millis(4);
    c.on_recv(slot, Received::Bytes(head), true, later, 0);
    assert_eq!(c.figures().counters.connected, 0, "partial response");
    c.on_recv(slot, Received::Bytes(tail), true, later, 5000);
    let f = c.figures();
    assert_eq!(
        (f.counters.connected, f.counters.open, c.in_flight()),
        (1, 1, 0)
    );
    assert_eq!(f.counters.messages, 1);
    assert_eq!(f.first_message_at_s, Some(0.004));
    assert_eq!(f.connect_latency.count(), 1);
    assert_eq!(f.latency.count(), 1);
    assert!(
        actions(&mut c).is_empty(),
        "the multishot receive stays armed"
    );
}

#[test]
fn ping_is_answered_and_receive_rearmed_when_the_multishot_ends() {
    let t0 = Instant::now();
    let mut c = core(hold(), t0);
    let slot = open(&mut c, 0, t0);
    let mut ping = server_frame(OpCode::Ping, b"hi");
    c.on_recv(slot, Received::Bytes(&mut ping), false, t0, 0);
    assert_eq!(actions(&mut c), vec![Action::ArmRecv(slot)]);
    let pong = sent_bytes(&mut c, slot, t0);
    assert_eq!(client_frames(&pong), vec!["Pong([104, 105])"]);
    assert_eq!(c.figures().counters.pings, 1);
    c.on_recv(slot, Received::NoBuffers, false, t0, 0);
    assert_eq!(actions(&mut c), vec![Action::ArmRecv(slot)]);
    assert_eq!(c.figures().counters.recv_enobufs, 1);
}

#[test]
fn partial_send_sends_the_rest() {
    let t0 = Instant::now();
    let mut c = core(hold(), t0);
    let slot = start(&mut c, 0, t0);
    c.on_connect_done(slot, Ok(()), t0);
    actions(&mut c);
    c.flush_sends();
    assert_eq!(actions(&mut c), vec![Action::Send(slot)]);
    let whole = c.unsent(slot.id).to_vec();
    c.on_send_done(slot, Ok(5), t0);
    c.flush_sends();
    assert_eq!(actions(&mut c), vec![Action::Send(slot)]);
    assert_eq!(c.unsent(slot.id), &whole[5..]);
}

#[test]
fn bad_handshake_fails_once_and_frees_the_slot() {
    let t0 = Instant::now();
    let mut c = core(hold(), t0);
    let slot = requested(&mut c, 0, t0);
    let mut refusal = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec();
    c.on_recv(slot, Received::Bytes(&mut refusal), true, t0, 0);
    assert_eq!(actions(&mut c), vec![Action::Shutdown(0)]);
    c.on_recv(slot, Received::End, false, t0, 0);
    assert_eq!(actions(&mut c), vec![Action::Close(0)]);
    let f = c.figures();
    assert_eq!(
        (f.counters.connect_errors.handshake, f.counters.failed()),
        (1, 1)
    );
    assert_eq!((c.live(), c.in_flight()), (0, 0));
}

#[test]
fn retry_after_defers_the_connection_and_it_comes_back_when_asked() {
    let t0 = Instant::now();
    let mut c = core(hold(), t0);
    let slot = requested(&mut c, 1, t0);
    let mut busy =
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n".to_vec();
    c.on_recv(slot, Received::Bytes(&mut busy), true, t0, 0);
    assert_eq!(actions(&mut c), vec![Action::Shutdown(0)]);
    c.on_recv(slot, Received::End, false, t0, 0);
    assert_eq!(actions(&mut c), vec![Action::Close(0)]);
    let f = c.figures();
    assert_eq!((f.counters.deferred, f.counters.failed()), (1, 0));
    assert_eq!((c.live(), c.in_flight()), (0, 0));
    // Not before Retry-After; within its second of jitter.
    c.expire(t0 + Duration::from_millis(1_999));
    assert!(actions(&mut c).is_empty());
    assert!(
        c.next_deadline()
            .is_some_and(|at| at < t0 + Duration::from_secs(3))
    );
    let due = t0 + Duration::from_secs(3);
    c.expire(due);
    let again = match actions(&mut c).as_slice() {
        [Action::Connect { slot, dest, .. }] => {
            assert_eq!(dest.port(), 9001, "the same connection of the plan");
            *slot
        }
        other => panic!("expected the retry's connect, got {other:?}"),
    };
    handshake(&mut c, again, due);
    assert_eq!(c.figures().counters.connected, 1);
}

#[test]
fn retries_still_waiting_at_the_stop_count_as_failed() {
    let t0 = Instant::now();
    let mut c = core(hold(), t0);
    let slot = requested(&mut c, 0, t0);
    let mut busy = b"HTTP/1.1 503 x\r\nRetry-After: 5\r\n\r\n".to_vec();
    c.on_recv(slot, Received::Bytes(&mut busy), true, t0, 0);
    c.begin_stop(t0);
    c.expire(t0 + Duration::from_secs(10));
    assert!(
        !actions(&mut c)
            .iter()
            .any(|a| matches!(a, Action::Connect { .. }))
    );
    assert_eq!(c.figures().counters.failed(), 1);
}

#[test]
fn connect_timeout_aborts_and_late_completions_are_stale() {
    let t0 = Instant::now();
    let mut c = core(hold(), t0);
    let slot = start(&mut c, 0, t0);
    assert_eq!(c.next_deadline(), Some(t0 + TIMEOUT));
    c.expire(t0 + TIMEOUT / 2);
    assert!(actions(&mut c).is_empty());
    c.expire(t0 + TIMEOUT);
    assert_eq!(actions(&mut c), vec![Action::Shutdown(0)]);
    c.on_connect_done(slot, Err(libc::ECANCELED), t0 + TIMEOUT);
    assert_eq!(actions(&mut c), vec![Action::Close(0)]);
    assert_eq!(c.figures().counters.connect_errors.timeout, 1);
    assert_eq!(c.live(), 0);
    let reused = start(&mut c, 1, t0 + TIMEOUT);
    assert_eq!(reused.id, slot.id);
    assert_ne!(reused.r#gen, slot.r#gen);
    c.on_connect_done(slot, Err(libc::ECONNREFUSED), t0 + TIMEOUT);
    c.on_recv(slot, Received::End, false, t0, 0);
    assert!(actions(&mut c).is_empty(), "the old generation is ignored");
    assert_eq!(c.figures().counters.connect_errors.refused, 0);
}

#[test]
fn refused_connect_and_failed_socket_are_counted_by_kind() {
    let t0 = Instant::now();
    let mut c = core(hold(), t0);
    let refused = start(&mut c, 0, t0);
    c.on_connect_done(refused, Err(libc::ECONNREFUSED), t0);
    assert_eq!(actions(&mut c), vec![Action::Close(0)]);
    let no_socket = start(&mut c, 1, t0);
    c.on_socket_failed(no_socket, libc::EMFILE, t0);
    assert!(actions(&mut c).is_empty(), "no socket to close");
    let e = c.figures().counters.connect_errors;
    assert_eq!((e.refused, e.other), (1, 1));
    assert_eq!((c.live(), c.in_flight()), (0, 0));
}

#[test]
fn server_close_is_answered_and_counted() {
    let t0 = Instant::now();
    let mut c = core(hold(), t0);
    let slot = open(&mut c, 0, t0);
    let mut close = server_frame(OpCode::Close, &close_payload(1001, "bye"));
    c.on_recv(slot, Received::Bytes(&mut close), true, t0, 0);
    let reply = sent_bytes(&mut c, slot, t0);
    assert!(client_frames(&reply)[0].contains("1001"));
    assert_eq!(c.figures().counters.closed_by_server, 1);
    assert_eq!(c.figures().counters.open, 1, "closing until the TCP end");
    c.on_recv(slot, Received::End, false, t0, 0);
    assert_eq!(actions(&mut c), vec![Action::Close(0)]);
    assert_eq!((c.figures().counters.open, c.live()), (0, 0));
    assert_eq!(c.figures().counters.closed_by_server, 1, "counted once");
}

#[test]
fn protocol_error_drops_the_connection() {
    let t0 = Instant::now();
    let mut c = core(hold(), t0);
    let slot = open(&mut c, 0, t0);
    let mut masked = Vec::new();
    encode_frame(&mut masked, OpCode::Text, b"x", Some([1, 2, 3, 4]));
    c.on_recv(slot, Received::Bytes(&mut masked), true, t0, 0);
    assert_eq!(actions(&mut c), vec![Action::Shutdown(0)]);
    let f = c.figures();
    assert_eq!((f.counters.protocol_errors, f.counters.open), (1, 0));
}

#[test]
fn expected_messages_complete_a_connection() {
    let t0 = Instant::now();
    let mut c = core(
        Scenario::Hold {
            expect_messages: Some(2),
        },
        t0,
    );
    let slot = open(&mut c, 0, t0);
    assert_eq!(c.awaiting(), 1);
    for body in [&b"0"[..], b"1"] {
        let mut frame = server_frame(OpCode::Binary, body);
        c.on_recv(slot, Received::Bytes(&mut frame), true, t0, 0);
    }
    assert_eq!(c.awaiting(), 0);
    assert_eq!(c.figures().counters.conns_complete, 1);
}

#[test]
fn echo_sends_on_schedule() {
    let t0 = Instant::now();
    let mut c = core(
        Scenario::Echo {
            msg_rate: 10.0,
            size: 32,
        },
        t0,
    );
    let slot = open(&mut c, 0, t0);
    c.start_scenario(t0, t0 + Duration::from_secs(5));
    let first = c.scenario_step(t0, 0).expect("an echo is due");
    assert!(first <= t0 + Duration::from_millis(100));
    assert_eq!(c.figures().counters.echo_sent, 0);
    let next = c.scenario_step(first, 123).unwrap();
    assert_eq!(next, first + Duration::from_millis(100));
    let frames = client_frames(&sent_bytes(&mut c, slot, first));
    assert_eq!(frames.len(), 1);
    assert!(frames[0].starts_with("Text"), "{frames:?}");
    assert_eq!(c.figures().counters.echo_sent, 1);
}

#[test]
fn churn_closes_and_reopens_in_the_same_slot() {
    let t0 = Instant::now();
    let interval = Duration::from_secs(1);
    let mut c = core(churn_every(interval), t0);
    let slot = open(&mut c, 0, t0);
    c.start_scenario(t0, t0 + Duration::from_secs(10));
    assert_eq!(c.scenario_step(t0, 0), Some(t0 + interval));
    let round = t0 + interval;
    assert_eq!(c.scenario_step(round, 0), Some(round + interval));
    assert_eq!(c.figures().counters.churn_closed, 1);
    let close = sent_bytes(&mut c, slot, round);
    assert!(client_frames(&close)[0].contains("1000"));
    c.on_recv(slot, Received::End, false, round, 0);
    let again = match actions(&mut c).as_slice() {
        [Action::Close(0), Action::Connect { slot, .. }] => *slot,
        other => panic!("expected close then reconnect, got {other:?}"),
    };
    assert_eq!(again.id, slot.id);
    handshake(&mut c, again, round);
    let f = c.figures();
    assert_eq!((f.counters.reconnects, f.counters.open), (1, 1));
    assert_eq!(f.reconnect_latency.count(), 1);
    assert_eq!(f.connect_latency.count(), 1, "first connects only");
}

#[test]
fn no_churn_round_at_the_end_of_the_measured_phase() {
    let t0 = Instant::now();
    let interval = Duration::from_secs(1);
    let mut c = core(churn_every(interval), t0);
    open(&mut c, 0, t0);
    c.start_scenario(t0, t0 + interval);
    assert_eq!(c.scenario_step(t0 + interval, 0), None);
    assert_eq!(c.figures().counters.churn_closed, 0);
}

#[test]
fn stop_closes_open_ends_attempts_and_aborts_the_rest() {
    let t0 = Instant::now();
    let mut c = core(hold(), t0);
    let first = open(&mut c, 0, t0);
    let attempt = start(&mut c, 1, t0);
    c.begin_stop(t0);
    assert_eq!(actions(&mut c), vec![Action::Shutdown(1)]);
    assert_eq!(c.in_flight(), 0);
    sent_bytes(&mut c, first, t0);
    c.on_connect_done(attempt, Err(libc::ECANCELED), t0);
    assert_eq!(actions(&mut c), vec![Action::Close(1)]);
    assert_eq!(
        c.figures().counters.failed(),
        0,
        "a stopped attempt is no failure"
    );
    assert_eq!(c.live(), 1);
    c.abort_all();
    assert_eq!(actions(&mut c), vec![Action::Shutdown(0)]);
    assert_eq!(c.figures().counters.open, 0);
    c.on_recv(first, Received::Error(libc::ECONNRESET), false, t0, 0);
    assert_eq!(actions(&mut c), vec![Action::Close(0)]);
    assert_eq!(c.live(), 0);
}

#[test]
fn close_grace_ends_a_silent_server() {
    let t0 = Instant::now();
    let mut c = core(hold(), t0);
    let slot = open(&mut c, 0, t0);
    c.begin_stop(t0);
    sent_bytes(&mut c, slot, t0);
    c.expire(t0 + TIMEOUT);
    assert!(
        actions(&mut c).is_empty(),
        "an open connection's connect deadline is moot"
    );
    assert_eq!(c.next_deadline(), Some(t0 + CLOSE_GRACE));
    c.expire(t0 + CLOSE_GRACE);
    assert_eq!(actions(&mut c), vec![Action::Shutdown(0)]);
    assert_eq!(c.figures().counters.open, 0);
}

#[test]
fn ramp_end_times_out_attempts_and_the_unstarted() {
    let t0 = Instant::now();
    let mut c = core(hold(), t0);
    open(&mut c, 0, t0);
    start(&mut c, 1, t0);
    c.end_ramp(3, t0);
    assert_eq!(actions(&mut c), vec![Action::Shutdown(1)]);
    assert_eq!(c.figures().counters.connect_errors.timeout, 4);
    assert_eq!(c.channel_subscribers(2), vec![1, 0]);
}

/// Completes the connect of `slot` and returns its upgrade request's first line.
fn request_line(core: &mut ClientCore, slot: SlotRef, now: Instant) -> String {
    core.on_connect_done(slot, Ok(()), now);
    assert_eq!(actions(core), vec![Action::ArmRecv(slot)]);
    let request = sent_bytes(core, slot, now);
    let mut response = accept(&request);
    core.on_recv(slot, Received::Bytes(&mut response), true, now, 0);
    let text = String::from_utf8(request).unwrap();
    text.lines().next().unwrap().to_owned()
}

fn json_frames(objects: &[String]) -> Vec<u8> {
    objects
        .iter()
        .flat_map(|o| server_frame(OpCode::Text, o.as_bytes()))
        .collect()
}

fn message(offset: u64) -> String {
    format!(
        r#"{{"type":"message","channel":"ch-0","epoch":"E","offset":{offset},"data":"{offset}:1:"}}"#
    )
}

#[test]
fn a_drained_connection_resumes_at_the_next_url_from_its_last_offset() {
    let t0 = Instant::now();
    let mut c = resuming_core(
        Scenario::Hold {
            expect_messages: Some(4),
        },
        t0,
    );
    let slot = start(&mut c, 0, t0);
    assert_eq!(
        request_line(&mut c, slot, t0),
        "GET /ch-0?format=json HTTP/1.1"
    );
    let mut bytes = json_frames(&[
        r#"{"type":"subscribed","channel":"ch-0","epoch":"E","offset":0}"#.to_owned(),
        message(1),
        message(2),
    ]);
    // The node drains: close 1001, then the end of the TCP connection.
    bytes.extend(server_frame(OpCode::Close, &close_payload(1001, "")));
    c.on_recv(slot, Received::Bytes(&mut bytes), true, t0, 0);
    assert_eq!(c.awaiting(), 1);
    let reply = sent_bytes(&mut c, slot, t0);
    assert!(
        client_frames(&reply)[0].contains("1001"),
        "the close is answered"
    );
    let lost = t0 + Duration::from_millis(10);
    c.on_recv(slot, Received::End, false, lost, 0);
    let [Action::Close(0), Action::Connect { slot, dest, .. }] = actions(&mut c)[..] else {
        panic!("close, then a connect to the other gateway");
    };
    assert_eq!(dest.port(), 9100);
    // That gateway refuses once: the next try goes back to the first after a backoff.
    c.on_connect_done(slot, Err(libc::ECONNREFUSED), lost);
    assert_eq!(actions(&mut c), vec![Action::Close(0)]);
    let retry_at = c.next_deadline().expect("a retry waits");
    assert!(retry_at > lost && retry_at <= lost + Duration::from_millis(75));
    c.expire(retry_at);
    let [Action::Connect { slot, dest, .. }] = actions(&mut c)[..] else {
        panic!("the retry");
    };
    assert_eq!(dest.port(), 9000);
    let back = retry_at + Duration::from_millis(5);
    assert_eq!(
        request_line(&mut c, slot, back),
        "GET /ch-0?format=json&since=E:2 HTTP/1.1"
    );
    let mut bytes = json_frames(&[
        r#"{"type":"subscribed","channel":"ch-0","epoch":"E","offset":3,"recovered":true}"#
            .to_owned(),
        message(3),
    ]);
    let caught_up = back + Duration::from_millis(1);
    c.on_recv(slot, Received::Bytes(&mut bytes), true, caught_up, 0);
    let f = c.figures();
    assert_eq!(f.counters.messages, 3);
    assert_eq!((f.counters.seq_gaps, f.counters.seq_dups), (0, 0));
    assert_eq!(
        f.counters.closed_by_server, 0,
        "a resumed close is no failure"
    );
    assert_eq!(f.counters.failed(), 0, "nor is a refused reconnect");
    assert_eq!(
        (
            f.counters.resume_server_closes,
            f.counters.resume_retries,
            f.counters.resume_recovered,
            f.counters.resume_caught_up
        ),
        (1, 1, 1, 1)
    );
    let recovery = f.recovery_latency.summary().unwrap();
    // From the server's close frame (at t0) to the promised offset.
    let expected_ms = (caught_up - t0).as_secs_f64() * 1e3;
    assert!((recovery.p50_ms - expected_ms).abs() < 1.0, "{recovery:?}");
    assert_eq!(c.awaiting(), 1, "one message still expected");
    let mut last = json_frames(&[message(4)]);
    c.on_recv(slot, Received::Bytes(&mut last), true, caught_up, 0);
    assert_eq!(c.awaiting(), 0);
    assert_eq!(c.figures().counters.conns_complete, 1);
}

#[test]
fn a_resumed_duplicate_or_unrecovered_position_is_counted() {
    let t0 = Instant::now();
    let mut c = resuming_core(hold(), t0);
    let slot = start(&mut c, 0, t0);
    request_line(&mut c, slot, t0);
    let mut bytes = json_frames(&[
        r#"{"type":"subscribed","channel":"ch-0","epoch":"E","offset":0}"#.to_owned(),
        message(1),
    ]);
    c.on_recv(slot, Received::Bytes(&mut bytes), true, t0, 0);
    c.on_recv(slot, Received::End, false, t0, 0);
    let [Action::Close(0), Action::Connect { slot, .. }] = actions(&mut c)[..] else {
        panic!("a reconnect");
    };
    request_line(&mut c, slot, t0);
    let mut bytes = json_frames(&[
        r#"{"type":"subscribed","channel":"ch-0","epoch":"F","offset":9,"recovered":false}"#
            .to_owned(),
        message(1).replace("\"E\"", "\"F\"").replace(":1,", ":10,"),
        message(1).replace("\"E\"", "\"F\"").replace(":1,", ":10,"),
    ]);
    c.on_recv(slot, Received::Bytes(&mut bytes), true, t0, 0);
    let counters = c.figures().counters;
    assert_eq!(counters.resume_not_recovered, 1);
    assert_eq!(counters.seq_dups, 1);
    assert_eq!(counters.seq_gaps, 0, "another epoch: nothing to compare");
}
