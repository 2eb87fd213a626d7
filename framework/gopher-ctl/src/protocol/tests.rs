use proptest::prelude::*;

use super::*;

// --- codec ----------------------------------------------------------------------------------

#[test]
fn requests_round_trip() {
    for req in [
        CtlRequest::probe_get("tcp"),
        CtlRequest::probe_set(
            "baseinfo",
            "{\"cmd\": {\"probe\": [\"cpu\"]},\n \"state\": \"running\"}",
        ),
        CtlRequest::probe_set("custom probe ünï", ""),
        CtlRequest::Metrics,
    ] {
        let bytes = req.encode().unwrap();
        assert_eq!(decode_request(&bytes), Ok(Some(req.clone())), "{req:?}");
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_request(&bytes[..cut]),
                Ok(None),
                "{req:?} cut at {cut}"
            );
        }
    }
}

#[test]
fn wire_form_is_the_documented_one() {
    assert_eq!(
        CtlRequest::probe_set("tcp", "{}").encode().unwrap(),
        b"GCTL1 probe-set 3 2\ntcp{}".to_vec()
    );
    assert_eq!(
        CtlRequest::probe_get("io").encode().unwrap(),
        b"GCTL1 probe-get 2 0\nio".to_vec()
    );
    assert_eq!(
        CtlRequest::Metrics.encode().unwrap(),
        b"GCTL1 metrics 0 0\n".to_vec()
    );
    assert_eq!(CtlReply::Ok("{}".into()).encode(), b"ok 2\n{}".to_vec());
    assert_eq!(CtlReply::Error("x".into()).encode(), b"error 1\nx".to_vec());
}

#[test]
fn encode_refuses_what_the_daemon_would() {
    assert_eq!(
        CtlRequest::probe_get("").encode(),
        Err(ProtocolError::EmptyName)
    );
    assert_eq!(
        CtlRequest::probe_get("n".repeat(MAX_NAME))
            .encode()
            .map(|_| ()),
        Ok(())
    );
    assert_eq!(
        CtlRequest::probe_get("n".repeat(MAX_NAME + 1)).encode(),
        Err(ProtocolError::TooLarge {
            field: "probe name",
            len: MAX_NAME + 1,
            max: MAX_NAME
        })
    );
    assert_eq!(
        CtlRequest::probe_get("a\nb").encode(),
        Err(ProtocolError::NameHasControl)
    );
    let big = "x".repeat(MAX_CONFIG + 1);
    assert_eq!(
        CtlRequest::probe_set("tcp", &big).encode(),
        Err(ProtocolError::TooLarge {
            field: "probe configuration",
            len: MAX_CONFIG + 1,
            max: MAX_CONFIG
        })
    );
    assert!(
        CtlRequest::probe_set("tcp", &big[1..]).encode().is_ok(),
        "exactly 1 MiB is fine"
    );
}

#[test]
fn malformed_requests_are_refused_as_soon_as_possible() {
    let cases: &[(&[u8], ProtocolError)] = &[
        (
            b"GCTL2 metrics 0 0\n",
            ProtocolError::BadMagic("GCTL2".into()),
        ),
        (
            b"GCTL1 probe-del 3 0\ntcp",
            ProtocolError::UnknownOp("probe-del".into()),
        ),
        (
            b"GCTL1 metrics 0\n",
            ProtocolError::MalformedHeader("GCTL1 metrics 0".into()),
        ),
        (
            b"GCTL1 metrics  0 0\n",
            ProtocolError::MalformedHeader("GCTL1 metrics  0 0".into()),
        ),
        (
            b"GCTL1 probe-get +3 0\n",
            ProtocolError::BadLength {
                field: "probe name",
                value: "+3".into(),
            },
        ),
        (
            b"GCTL1 probe-set 3 99999999999\n",
            ProtocolError::BadLength {
                field: "probe configuration",
                value: "99999999999".into(),
            },
        ),
        // Refused from the header alone, before any of the announced bytes arrive.
        (
            b"GCTL1 probe-set 3 1048577\n",
            ProtocolError::TooLarge {
                field: "probe configuration",
                len: 1_048_577,
                max: MAX_CONFIG,
            },
        ),
        (
            b"GCTL1 probe-get 65 0\n",
            ProtocolError::TooLarge {
                field: "probe name",
                len: 65,
                max: MAX_NAME,
            },
        ),
        (
            b"GCTL1 metrics 3 0\ntcp",
            ProtocolError::Unexpected {
                op: "metrics",
                field: "probe name",
            },
        ),
        (
            b"GCTL1 probe-get 3 2\ntcp{}",
            ProtocolError::Unexpected {
                op: "probe-get",
                field: "probe configuration",
            },
        ),
        (b"GCTL1 probe-get 0 0\n", ProtocolError::EmptyName),
        (b"GCTL1 probe-get 3 0\nt\tp", ProtocolError::NameHasControl),
        (
            b"GCTL1 probe-get 2 0\n\xff\xfe",
            ProtocolError::NotUtf8("probe name"),
        ),
        (
            b"GCTL1 probe-set 3 2\ntcp\xff}",
            ProtocolError::NotUtf8("probe configuration"),
        ),
        (b"GCTL1 metrics 0 0\nmore", ProtocolError::TrailingBytes(4)),
    ];
    for (bytes, want) in cases {
        assert_eq!(
            decode_request(bytes).as_ref(),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let long = vec![b'G'; MAX_HEADER + 1];
    assert_eq!(decode_request(&long), Err(ProtocolError::HeaderTooLong));
    assert_eq!(decode_request(&long[..MAX_HEADER]), Ok(None));
}

#[test]
fn replies_round_trip_and_bad_ones_are_refused() {
    for reply in [
        CtlReply::Ok(String::new()),
        CtlReply::Ok("{ \"result\": \"failed\", \"message\":\"x\" }\n".into()),
        CtlReply::Error("bad request".into()),
    ] {
        let bytes = reply.encode();
        assert_eq!(decode_reply(&bytes), Ok(Some(reply.clone())));
        for cut in 0..bytes.len() {
            assert_eq!(decode_reply(&bytes[..cut]), Ok(None));
        }
    }
    assert_eq!(
        decode_reply(b"fine 0\n"),
        Err(ProtocolError::UnknownStatus("fine".into()))
    );
    assert_eq!(
        decode_reply(b"ok\n"),
        Err(ProtocolError::MalformedHeader("ok".into()))
    );
    assert_eq!(
        decode_reply(b"ok 999999999\n"),
        Err(ProtocolError::TooLarge {
            field: "reply",
            len: 999_999_999,
            max: MAX_REPLY
        })
    );
    assert_eq!(
        decode_reply(b"ok 1\nab"),
        Err(ProtocolError::TrailingBytes(1))
    );
    assert_eq!(
        decode_reply(b"ok 1\n\xff"),
        Err(ProtocolError::NotUtf8("reply"))
    );
}

proptest! {
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_request(&bytes);
        let _ = decode_reply(&bytes);
    }

    #[test]
    fn decoders_never_panic_behind_a_valid_header(
        head in prop::sample::select(vec![
            "GCTL1 probe-get 4 0\n", "GCTL1 probe-set 2 5\n", "GCTL1 metrics 0 0\n", "ok 5\n", "error 3\n",
        ]),
        tail in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut bytes = head.as_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        let _ = decode_request(&bytes);
        let _ = decode_reply(&bytes);
    }

    #[test]
    fn any_valid_request_round_trips(name in "[^\\p{Cc}]{1,16}", json in any::<String>()) {
        prop_assume!(name.len() <= MAX_NAME);
        for req in [CtlRequest::probe_get(&name), CtlRequest::probe_set(&name, &json)] {
            let bytes = req.encode().unwrap();
            prop_assert_eq!(decode_request(&bytes), Ok(Some(req)));
        }
    }

    #[test]
    fn any_reply_round_trips(text in any::<String>(), ok in any::<bool>()) {
        let reply = if ok { CtlReply::Ok(text) } else { CtlReply::Error(text) };
        prop_assert_eq!(decode_reply(&reply.encode()), Ok(Some(reply)));
    }
}
