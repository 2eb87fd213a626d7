//! Tests of the whole channel: both encodings, framing, limits, and the blocking and tokio helpers
//! talking to each other over a real socket pair.

use std::collections::HashMap;
use std::io::{BufReader, Cursor};

use proptest::prelude::*;

use crate::v1::{
    daemon_message, probe_message, snooper_object, status, Container, CustomPayload, DaemonMessage,
    Hello, Params, ProbeConfig, ProbeMessage, Process, SnooperMode, SnooperObject, Status,
};
use crate::{
    blocking, encode, tokio_io, DecodeError, EncodeError, Encoding, FrameDecoder, ReadError,
    WireMessage, WriteError, MAX_FRAME_LEN, PARAMS_CHG, SNOOPER_CHG,
};

const ENCODINGS: [Encoding; 2] = [Encoding::Proto, Encoding::Json];

/// A configuration with every field set to a non-default value.
fn full_config() -> DaemonMessage {
    let params = Params {
        report_period: 5,
        sample_period: 100,
        latency_thr: 10,
        offline_thr: 20,
        drops_thr: 30,
        kafka_port: 9093,
        report_event: true,
        ringbuf_map_size: 8,
        report_cport: true,
        metrics_flags: 0x3,
        env_flags: 0x7,
        support_ssl: true,
        res_upper_thr: 90,
        res_lower_thr: 10,
        continuous_sampling: true,
        multi_instance: true,
        native_stack: true,
        cluster_ip_backend: 2,
        dev_name: "eth0".into(),
        elf_path: "/usr/sbin/nginx".into(),
        l7_probe_proto_flags: 0x1 | 0x4,
        l7_protocol: vec!["http".into(), "redis".into()],
        svg_period: 30,
        perf_sample_period: 1000,
        pyroscope_server: "localhost:4040".into(),
        output_dir: "/tmp/out".into(),
        flame_dir: "/var/log/gala-gopher/flamegraph".into(),
        cadvisor_port: 8083,
        profiling_channel: "kafka".into(),
        min_exec_dur: 1,
        min_aggr_dur: 100,
    };
    let snoopers = vec![
        SnooperObject {
            object: Some(snooper_object::Object::Process(Process {
                pid: 4242,
                comm: "nginx".into(),
                cmdline: "nginx: worker process \"quoted\"\n".into(),
                exe: "/usr/sbin/nginx".into(),
                container_id: "0123456789ab".into(),
                pod_id: "pod-1".into(),
            })),
        },
        SnooperObject {
            object: Some(snooper_object::Object::Container(Container {
                id: "0123456789ab".into(),
                name: "web".into(),
                pod_id: "pod-1".into(),
                pod_name: "web-7d9f".into(),
                image: "nginx:1.25".into(),
                cpucg_inode: u64::MAX,
                libc_path: "/proc/4242/root/lib/libc.so.6".into(),
                libssl_path: "/proc/4242/root/lib/libssl.so.3".into(),
            })),
        },
    ];
    DaemonMessage {
        body: Some(daemon_message::Body::Config(ProbeConfig {
            probe_name: "l7".into(),
            seq: u64::MAX - 1,
            change_flags: SNOOPER_CHG | PARAMS_CHG,
            subitems: vec!["l7_bytes_metrics".into(), "l7_rpc_trace".into()],
            subitem_mask: 0x1 | 0x4,
            snooper_mode: SnooperMode::Blacklist.into(),
            params: Some(params),
            snoopers,
            custom_labels: HashMap::from([("zone".into(), "a".into()), ("é".into(), "ü".into())]),
            custom: Some(CustomPayload {
                subitems: vec!["first".into()],
                params: HashMap::from([("label".into(), "value".into())]),
            }),
        })),
    }
}

fn probe_messages() -> Vec<ProbeMessage> {
    vec![
        ProbeMessage {
            body: Some(probe_message::Body::Hello(Hello {
                sdk_version: "rust-0.1.0".into(),
                probe_name: "tcp".into(),
                pid: 77,
            })),
        },
        ProbeMessage {
            body: Some(probe_message::Body::Status(Status {
                level: status::Level::Error.into(),
                text: "cannot attach: permission denied".into(),
                config_seq: u64::MAX,
            })),
        },
    ]
}

fn status_message(text: &str, config_seq: u64) -> ProbeMessage {
    ProbeMessage {
        body: Some(probe_message::Body::Status(Status {
            level: status::Level::Warn.into(),
            text: text.into(),
            config_seq,
        })),
    }
}

/// Decodes every message `bytes` holds, pushing them in one go.
fn decode_all<M: WireMessage>(encoding: Encoding, bytes: &[u8]) -> Vec<Result<M, String>> {
    let mut decoder = FrameDecoder::<M>::new(encoding);
    decoder.push(bytes);
    drain(&mut decoder)
}

fn drain<M: WireMessage>(decoder: &mut FrameDecoder<M>) -> Vec<Result<M, String>> {
    let mut out = Vec::new();
    loop {
        match decoder.next() {
            Ok(Some(message)) => out.push(Ok(message)),
            Ok(None) => return out,
            Err(err) => out.push(Err(err.to_string())),
        }
    }
}

#[test]
fn full_config_round_trips_in_both_encodings() {
    let config = full_config();
    for encoding in ENCODINGS {
        let frame = encode(&config, encoding).unwrap();
        let decoded = decode_all::<DaemonMessage>(encoding, &frame);
        assert_eq!(decoded, vec![Ok(config.clone())], "{encoding}");
    }
}

#[test]
fn probe_messages_round_trip_in_both_encodings() {
    for encoding in ENCODINGS {
        for message in probe_messages() {
            let frame = encode(&message, encoding).unwrap();
            let decoded = decode_all::<ProbeMessage>(encoding, &frame);
            assert_eq!(decoded, vec![Ok(message)], "{encoding}");
        }
    }
}

#[test]
fn proto_frame_is_big_endian_length_then_body() {
    let message = status_message("x", 1);
    let frame = encode(&message, Encoding::Proto).unwrap();
    let body = prost::Message::encode_to_vec(&message);
    assert_eq!(frame[..4], (body.len() as u32).to_be_bytes());
    assert_eq!(frame[4..], body[..]);
}

#[test]
fn json_uses_camel_case_names_enum_names_and_string_u64() {
    let status = encode(&status_message("disk \"full\"", 7), Encoding::Json).unwrap();
    assert_eq!(
        String::from_utf8(status).unwrap(),
        "{\"status\":{\"level\":\"LEVEL_WARN\",\"text\":\"disk \\\"full\\\"\",\"configSeq\":\"7\"}}\n"
    );

    let config = DaemonMessage {
        body: Some(daemon_message::Body::Config(ProbeConfig {
            probe_name: "tcp".into(),
            seq: 1,
            change_flags: SNOOPER_CHG | PARAMS_CHG,
            subitems: vec!["tcp_rtt".into()],
            snooper_mode: SnooperMode::Blacklist.into(),
            ..Default::default()
        })),
    };
    assert_eq!(
        String::from_utf8(encode(&config, Encoding::Json).unwrap()).unwrap(),
        "{\"config\":{\"probeName\":\"tcp\",\"seq\":\"1\",\"changeFlags\":3,\
         \"subitems\":[\"tcp_rtt\"],\"snooperMode\":\"SNOOPER_MODE_BLACKLIST\"}}\n"
    );
}

#[test]
fn json_frames_hold_exactly_one_newline() {
    let frame = encode(&full_config(), Encoding::Json).unwrap();
    assert_eq!(memchr::memchr_iter(b'\n', &frame).count(), 1);
    assert_eq!(frame.last(), Some(&b'\n'));
}

#[test]
fn hand_written_json_lines_decode() {
    let lines = concat!(
        "{\"hello\":{\"sdkVersion\":\"sh-1\",\"probeName\":\"x\"}}\n",
        // Blank lines and CRLF endings, as a careless script may write them.
        "\n  \r\n",
        "{\"status\":{\"level\":\"LEVEL_INFO\",\"text\":\"ok\",\"configSeq\":3}}\r\n",
        // The original field names and enum numbers are accepted too; unknown fields ignored.
        "{\"status\":{\"config_seq\":\"4\",\"level\":3,\"futureField\":[1,2]}}\n",
        "{}\n",
    );
    let decoded = decode_all::<ProbeMessage>(Encoding::Json, lines.as_bytes());
    let expected = vec![
        Ok(ProbeMessage {
            body: Some(probe_message::Body::Hello(Hello {
                sdk_version: "sh-1".into(),
                probe_name: "x".into(),
                pid: 0,
            })),
        }),
        Ok(ProbeMessage {
            body: Some(probe_message::Body::Status(Status {
                level: status::Level::Info.into(),
                text: "ok".into(),
                config_seq: 3,
            })),
        }),
        Ok(ProbeMessage {
            body: Some(probe_message::Body::Status(Status {
                level: status::Level::Error.into(),
                text: String::new(),
                config_seq: 4,
            })),
        }),
        Ok(ProbeMessage { body: None }),
    ];
    assert_eq!(decoded, expected);
}

#[test]
fn bad_json_line_is_reported_and_the_next_line_decodes() {
    let input =
        b"{\"hello\":\n{\"status\":{\"level\":\"LOUD\"}}\n{\"status\":{\"configSeq\":\"9\"}}\n";
    let decoded = decode_all::<ProbeMessage>(Encoding::Json, input);
    assert_eq!(decoded.len(), 3, "{decoded:?}");
    assert!(decoded[0]
        .as_ref()
        .unwrap_err()
        .starts_with("invalid JSON message"));
    assert!(
        decoded[1].as_ref().unwrap_err().contains("LOUD"),
        "{decoded:?}"
    );
    assert!(decoded[2].is_ok());
}

#[test]
fn bad_protobuf_body_is_reported_and_the_next_frame_decodes() {
    let mut input = vec![0, 0, 0, 2, 0xff, 0xff];
    input.extend(encode(&status_message("after", 1), Encoding::Proto).unwrap());
    let decoded = decode_all::<ProbeMessage>(Encoding::Proto, &input);
    assert!(decoded[0]
        .as_ref()
        .unwrap_err()
        .starts_with("invalid protobuf message"));
    assert_eq!(decoded[1], Ok(status_message("after", 1)));
    assert_eq!(decoded.len(), 2);
}

#[test]
fn frames_split_across_reads_and_packed_into_one_read() {
    let messages: Vec<ProbeMessage> = (0..5).map(|i| status_message("progress", i)).collect();
    for encoding in ENCODINGS {
        let stream: Vec<u8> = messages
            .iter()
            .flat_map(|m| encode(m, encoding).unwrap())
            .collect();
        // Every chunk size from byte-by-byte to all at once.
        for chunk_len in 1..=stream.len() {
            let mut decoder = FrameDecoder::<ProbeMessage>::new(encoding);
            let mut decoded = Vec::new();
            for chunk in stream.chunks(chunk_len) {
                decoder.push(chunk);
                decoded.extend(drain(&mut decoder));
            }
            let expected: Vec<_> = messages.iter().cloned().map(Ok).collect();
            assert_eq!(decoded, expected, "{encoding}, chunks of {chunk_len}");
            assert_eq!(decoder.buffered_len(), 0);
        }
    }
}

#[test]
fn oversized_proto_frame_is_skipped_without_buffering() {
    let max = 64;
    let mut decoder = FrameDecoder::<ProbeMessage>::with_max_frame_len(Encoding::Proto, max);
    let after = encode(&status_message("after", 2), Encoding::Proto).unwrap();
    decoder.push(&1000u32.to_be_bytes());
    decoder.push(&[0xAA; 10]);
    assert!(matches!(
        decoder.next(),
        Err(DecodeError::FrameTooLarge { len: 1000, max: 64 })
    ));
    assert_eq!(decoder.buffered_len(), 0);
    // The remaining 990 body bytes arrive in pieces, the last one together with the next frame.
    for _ in 0..9 {
        decoder.push(&[0xAA; 100]);
        assert_eq!(decoder.buffered_len(), 0);
        assert!(decoder.next().unwrap().is_none());
    }
    let mut tail = vec![0xAA; 90];
    tail.extend(&after);
    decoder.push(&tail);
    assert_eq!(decoder.next().unwrap(), Some(status_message("after", 2)));
    assert!(decoder.next().unwrap().is_none());
}

#[test]
fn oversized_json_line_is_reported_once_and_the_decoder_resyncs() {
    let max = 64;
    let mut decoder = FrameDecoder::<ProbeMessage>::with_max_frame_len(Encoding::Json, max);
    decoder.push(&[b'x'; 40]);
    assert!(decoder.next().unwrap().is_none());
    decoder.push(&[b'x'; 40]);
    assert!(matches!(
        decoder.next(),
        Err(DecodeError::LineTooLong { max: 64 })
    ));
    decoder.push(&[b'x'; 1000]);
    assert!(decoder.next().unwrap().is_none());
    assert_eq!(decoder.buffered_len(), 0);
    let mut tail = b"xxx\n".to_vec();
    tail.extend(encode(&status_message("after", 3), Encoding::Json).unwrap());
    decoder.push(&tail);
    assert_eq!(decoder.next().unwrap(), Some(status_message("after", 3)));

    // A complete over-long line arriving in one read is rejected the same way.
    let mut input = vec![b'{'; 65];
    input.push(b'\n');
    input.extend(encode(&status_message("next", 4), Encoding::Json).unwrap());
    let decoded = decode_all_with_max::<ProbeMessage>(Encoding::Json, max, &input);
    assert_eq!(
        decoded,
        vec![
            Err("JSON line exceeds the frame limit of 64 bytes".to_owned()),
            Ok(status_message("next", 4))
        ]
    );
    // Exactly the limit is accepted.
    let line = encode(&status_message("", 1), Encoding::Json).unwrap();
    let exact = line.len() - 1;
    let decoded = decode_all_with_max::<ProbeMessage>(Encoding::Json, exact, &line);
    assert_eq!(decoded, vec![Ok(status_message("", 1))]);
}

fn decode_all_with_max<M: WireMessage>(
    encoding: Encoding,
    max: usize,
    bytes: &[u8],
) -> Vec<Result<M, String>> {
    let mut decoder = FrameDecoder::<M>::with_max_frame_len(encoding, max);
    decoder.push(bytes);
    drain(&mut decoder)
}

#[test]
fn encode_rejects_messages_over_the_limit() {
    let huge = status_message(&"x".repeat(MAX_FRAME_LEN), 1);
    for encoding in ENCODINGS {
        let err = encode(&huge, encoding).unwrap_err();
        assert!(
            matches!(
                err,
                EncodeError::FrameTooLarge {
                    max: MAX_FRAME_LEN,
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn unnamed_enum_number_travels_as_protobuf_but_not_as_json() {
    let message = ProbeMessage {
        body: Some(probe_message::Body::Status(Status {
            level: 42,
            ..Default::default()
        })),
    };
    let frame = encode(&message, Encoding::Proto).unwrap();
    assert_eq!(
        decode_all::<ProbeMessage>(Encoding::Proto, &frame),
        vec![Ok(message.clone())]
    );
    assert!(matches!(
        encode(&message, Encoding::Json),
        Err(EncodeError::Json(_))
    ));
}

#[test]
fn blocking_reader_handles_oversized_frames_and_resyncs() {
    let after = status_message("after", 5);
    // Protobuf: a frame announced one byte over the limit, its body, then a good frame.
    let mut input = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes().to_vec();
    input.resize(input.len() + MAX_FRAME_LEN + 1, 0xAA);
    input.extend(encode(&after, Encoding::Proto).unwrap());
    let mut reader = BufReader::new(Cursor::new(input));
    let first = blocking::read_message::<ProbeMessage, _>(&mut reader, Encoding::Proto);
    assert!(matches!(
        first,
        Err(ReadError::Decode(DecodeError::FrameTooLarge { .. }))
    ));
    let second = blocking::read_message::<ProbeMessage, _>(&mut reader, Encoding::Proto);
    assert_eq!(second.unwrap(), Some(after.clone()));
    let end = blocking::read_message::<ProbeMessage, _>(&mut reader, Encoding::Proto);
    assert_eq!(end.unwrap(), None);

    // JSON: a line one byte over the limit, then a good line.
    let mut input = vec![b' '; MAX_FRAME_LEN + 1];
    input.push(b'\n');
    input.extend(encode(&after, Encoding::Json).unwrap());
    let mut reader = BufReader::new(Cursor::new(input));
    let first = blocking::read_message::<ProbeMessage, _>(&mut reader, Encoding::Json);
    assert!(matches!(
        first,
        Err(ReadError::Decode(DecodeError::LineTooLong { .. }))
    ));
    let second = blocking::read_message::<ProbeMessage, _>(&mut reader, Encoding::Json);
    assert_eq!(second.unwrap(), Some(after));
}

#[test]
fn blocking_reader_reports_truncated_frames() {
    for encoding in ENCODINGS {
        let frame = encode(&status_message("cut", 1), encoding).unwrap();
        for cut in 1..frame.len() {
            let mut reader = BufReader::new(Cursor::new(frame[..cut].to_vec()));
            let result = blocking::read_message::<ProbeMessage, _>(&mut reader, encoding);
            assert!(
                matches!(result, Err(ReadError::Truncated)),
                "{encoding}, cut at {cut}: {result:?}"
            );
        }
    }
}

#[test]
fn write_error_names_oversized_message() {
    let huge = status_message(&"x".repeat(MAX_FRAME_LEN), 1);
    let mut sink = Vec::new();
    let err = blocking::write_message(&mut sink, &huge, Encoding::Json).unwrap_err();
    assert!(matches!(
        err,
        WriteError::Encode(EncodeError::FrameTooLarge { .. })
    ));
    assert!(sink.is_empty(), "nothing is written for a rejected message");
}

#[tokio::test]
async fn tokio_reader_handles_oversized_and_truncated_frames() {
    let after = status_message("after", 6);
    let mut input = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes().to_vec();
    input.resize(input.len() + MAX_FRAME_LEN + 1, 0xAA);
    input.extend(encode(&after, Encoding::Proto).unwrap());
    input.extend(&[0, 0, 0, 9, 1]);
    let mut reader = &input[..];
    let first = tokio_io::read_message::<ProbeMessage, _>(&mut reader, Encoding::Proto).await;
    assert!(matches!(
        first,
        Err(ReadError::Decode(DecodeError::FrameTooLarge { .. }))
    ));
    let second = tokio_io::read_message::<ProbeMessage, _>(&mut reader, Encoding::Proto).await;
    assert_eq!(second.unwrap(), Some(after.clone()));
    let third = tokio_io::read_message::<ProbeMessage, _>(&mut reader, Encoding::Proto).await;
    assert!(matches!(third, Err(ReadError::Truncated)), "{third:?}");

    let mut input = vec![b'x'; MAX_FRAME_LEN + 1];
    input.extend(b"\n\n");
    input.extend(encode(&after, Encoding::Json).unwrap());
    input.extend(b"{\"hello\"");
    let mut reader = &input[..];
    let first = tokio_io::read_message::<ProbeMessage, _>(&mut reader, Encoding::Json).await;
    assert!(matches!(
        first,
        Err(ReadError::Decode(DecodeError::LineTooLong { .. }))
    ));
    let second = tokio_io::read_message::<ProbeMessage, _>(&mut reader, Encoding::Json).await;
    assert_eq!(second.unwrap(), Some(after));
    let third = tokio_io::read_message::<ProbeMessage, _>(&mut reader, Encoding::Json).await;
    assert!(matches!(third, Err(ReadError::Truncated)), "{third:?}");
}

/// The daemon side (tokio) and a probe (blocking, in its own thread) over a real socket pair.
#[tokio::test]
async fn blocking_probe_and_tokio_daemon_talk_over_a_socket_pair() {
    for encoding in ENCODINGS {
        let (daemon_end, probe_end) = std::os::unix::net::UnixStream::pair().unwrap();
        let probe = std::thread::spawn(move || {
            let mut reader = BufReader::new(&probe_end);
            let mut configs = Vec::new();
            while let Some(message) =
                blocking::read_message::<DaemonMessage, _>(&mut reader, encoding).unwrap()
            {
                let Some(daemon_message::Body::Config(config)) = message.body else {
                    panic!("unexpected message {message:?}");
                };
                let reply = status_message("applied", config.seq);
                blocking::write_message(&mut &probe_end, &reply, encoding).unwrap();
                configs.push(config.seq);
            }
            configs
        });

        daemon_end.set_nonblocking(true).unwrap();
        let daemon_end = tokio::net::UnixStream::from_std(daemon_end).unwrap();
        let (read_half, mut write_half) = daemon_end.into_split();
        let mut reader = tokio::io::BufReader::new(read_half);
        let mut config = full_config();
        for seq in 1..=3u64 {
            if let Some(daemon_message::Body::Config(body)) = config.body.as_mut() {
                body.seq = seq;
            }
            tokio_io::write_message(&mut write_half, &config, encoding)
                .await
                .unwrap();
            let reply = tokio_io::read_message::<ProbeMessage, _>(&mut reader, encoding)
                .await
                .unwrap();
            assert_eq!(reply, Some(status_message("applied", seq)), "{encoding}");
        }
        // Closing the daemon's side ends the probe's loop; the probe then closes its side.
        drop(write_half);
        let end = tokio_io::read_message::<ProbeMessage, _>(&mut reader, encoding)
            .await
            .unwrap();
        assert_eq!(end, None);
        assert_eq!(probe.join().unwrap(), vec![1, 2, 3]);
    }
}

/// A stream of messages encoded, concatenated and cut at arbitrary points decodes to the same
/// messages.
fn chunked_round_trip(encoding: Encoding, seqs: &[u64], cuts: &[usize]) {
    let messages: Vec<ProbeMessage> = seqs.iter().map(|&s| status_message("p", s)).collect();
    let stream: Vec<u8> = messages
        .iter()
        .flat_map(|m| encode(m, encoding).unwrap())
        .collect();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.sort_unstable();
    let mut decoder = FrameDecoder::<ProbeMessage>::new(encoding);
    let mut decoded = Vec::new();
    let mut from = 0;
    for point in points.into_iter().chain([stream.len()]) {
        decoder.push(&stream[from..point]);
        decoded.extend(drain(&mut decoder));
        from = point;
    }
    assert_eq!(decoded, messages.into_iter().map(Ok).collect::<Vec<_>>());
}

/// Feeds `chunks` to a decoder of `M` with a small limit, checking it never panics nor loops.
fn feed<M: WireMessage>(encoding: Encoding, chunks: &[Vec<u8>]) {
    let mut decoder = FrameDecoder::<M>::with_max_frame_len(encoding, 256);
    for chunk in chunks {
        decoder.push(chunk);
        // Every call either returns None or consumes at least one byte, so this terminates.
        for _ in 0..=chunk.len() + 1 {
            if let Ok(None) = decoder.next() {
                break;
            }
        }
        assert!(decoder.buffered_len() <= 256 + 4 + chunk.len());
    }
}

proptest! {
    #[test]
    fn decoder_survives_random_bytes(chunks in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
        for encoding in ENCODINGS {
            feed::<DaemonMessage>(encoding, &chunks);
            feed::<ProbeMessage>(encoding, &chunks);
        }
    }

    #[test]
    fn decoder_survives_random_json_lines(lines in proptest::collection::vec(
        "[{}\\[\\]\":,0-9a-zA-Z_ \\\\\n-]{0,80}", 0..12)) {
        let chunks: Vec<Vec<u8>> = lines.iter().map(|l| format!("{l}\n").into_bytes()).collect();
        feed::<DaemonMessage>(Encoding::Json, &chunks);
        feed::<ProbeMessage>(Encoding::Json, &chunks);
    }

    #[test]
    fn blocking_reader_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        for encoding in ENCODINGS {
            let mut reader = BufReader::new(Cursor::new(bytes.clone()));
            // Each call consumes at least one byte or reports the end.
            for _ in 0..=bytes.len() {
                match blocking::read_message::<DaemonMessage, _>(&mut reader, encoding) {
                    Ok(None) | Err(ReadError::Truncated) | Err(ReadError::Io(_)) => break,
                    Ok(Some(_)) | Err(ReadError::Decode(_)) => {}
                }
            }
        }
    }

    #[test]
    fn random_cuts_preserve_messages(
        seqs in proptest::collection::vec(any::<u64>(), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        for encoding in ENCODINGS {
            chunked_round_trip(encoding, &seqs, &cuts);
        }
    }
}
