//! The parsers' exact error texts, and hostile bytes.
use super::*;

fn v(s: &str) -> Vec<&[u8]> {
    s.split(' ')
        .filter(|w| !w.is_empty())
        .map(str::as_bytes)
        .collect()
}

fn err<T: std::fmt::Debug>(r: Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn integers() {
    for (text, want) in [
        ("0", Some(0)),
        ("42", Some(42)),
        ("+7", Some(7)),
        ("-7", Some(-7)),
        ("9223372036854775807", Some(i64::MAX)),
        ("-9223372036854775808", Some(i64::MIN)),
        ("9223372036854775808", None),
        ("", None),
        ("-", None),
        ("1.5", None),
        (" 1", None),
        ("1e3", None),
    ] {
        assert_eq!(int(text.as_bytes()), want, "{text}");
    }
}

#[test]
fn reserve_forms() {
    let r = reserve(&v("k t 3")).unwrap();
    assert_eq!(
        (r.key, r.txid_arg, r.qty_arg),
        (&b"k"[..], &b"t"[..], &b"3"[..])
    );
    assert_eq!((r.qty, r.ttl), (3, Ttl::Default));
    assert_eq!(reserve(&v("k t 3 ttl 50")).unwrap().ttl, Ttl::Millis(50));
    assert_eq!(reserve(&v("k t 3 PXAT 99")).unwrap().ttl, Ttl::At(99));
}

#[test]
fn bad_input_texts() {
    let long = [b'x'; 129];
    let cases = [
        (err(reserve(&v("k t"))), "ERR wrong number of arguments for 'inv.reserve' command"),
        (err(reserve(&v("k t 0"))), "ERR qty must be an integer from 1 to 9007199254740991, got '0'"),
        (err(reserve(&v("k t x"))), "ERR qty must be an integer from 1 to 9007199254740991, got 'x'"),
        (err(reserve(&v("k t 1 EX 5"))), "ERR unknown option 'EX' for 'inv.reserve'; accepted: TTL ms | PXAT unix-ms, BUYER id, BLOCK ms"),
        (err(reserve(&v("k t 1 TTL -5"))), "ERR TTL must be a non-negative integer of milliseconds, got '-5'"),
        (err(set(&v("k -1"))), "ERR stock must be an integer from 0 to 9007199254740991, got '-1'"),
        (err(set(&v("k 1 IFVERSION x"))), "ERR IFVERSION must be a non-negative integer, got 'x'"),
        (err(set(&v("k 1 NX"))), "ERR unknown option 'NX' for 'inv.set'; accepted: IFVERSION version"),
        (err(add(&v("k 9007199254740992"))), "ERR delta must be an integer from -9007199254740991 to 9007199254740991, got '9007199254740992'"),
        (err(key_txid("inv.confirm", &[&b"k"[..], &long[..]])), "ERR txid must be 1 to 128 bytes, got 129"),
        (err(key_txid("inv.confirm", &[&b"k"[..], &b""[..]])), "ERR txid must be 1 to 128 bytes, got 0"),
        (err(mreserve(&v("t 0 k"), 10)), "ERR wrong number of arguments for 'inv.mreserve' command"),
        (err(scan(&v("k 0 COUNT 0"))), "ERR COUNT must be an integer from 1 to 100000, got '0'"),
        (err(scan(&v("k nope"))), "ERR invalid cursor"),
        (err(multi("inv.mcancel", &v("t a b c"), 2)), "ERR too many keys for 'inv.mcancel': 3, at most 2 (inventory.max-keys-per-command)"),
        (err(mreserve(&v("t 0 a 1 b 1 c 1"), 2)), "ERR too many keys for 'inv.mreserve': 3, at most 2 (inventory.max-keys-per-command)"),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
}

#[test]
fn multi_key_forms_merge_repeats() {
    let args = v("t 0 a 1 b 2 a 3");
    let m = mreserve(&args, 10).unwrap();
    assert_eq!(m.items, vec![(&b"a"[..], 4), (&b"b"[..], 2)]);
    assert_eq!(m.ttl, Ttl::Default);
    let args = v("t a b a");
    assert_eq!(
        multi("inv.mconfirm", &args, 10).unwrap().keys,
        vec![&b"a"[..], &b"b"[..]]
    );
}

/// One argument as a hostile client might send it: arbitrary bytes,
/// arbitrary UTF-8 (characters whose code point is a multiple of 256
/// included), keywords, numbers at and past every bound, long atoms.
fn atom() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..12),
        any::<String>().prop_map(String::into_bytes),
        proptest::sample::select(vec![
            "Ā",
            "\u{3000}",
            "一",
            "\0",
            "\r\n",
            "%s%n",
            "TTL",
            "PXAT",
            "COUNT",
            "IFVERSION",
            "0",
            "-1",
            "1",
            "9007199254740991",
            "9007199254740992",
            "9223372036854775807",
            "18446744073709551616",
            "k",
            "t",
            "RESERVE",
            "FEED",
            "5-1",
            "RESERVE:5-1:100",
            "CANCEL:1-0:0:1-0",
            "CANCEL:18446744073709551616-0:1",
            ":",
        ])
        .prop_map(|w| w.as_bytes().to_vec()),
        (0usize..3000).prop_map(|n| vec![b'9'; n]),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// `int` reads what the standard parser reads, up to 19 digits.
    #[test]
    fn integers_match_the_standard_parser(text in "[+-]?[0-9]{0,21}|[+-]?[0-9]{0,5}[^0-9][0-9]{0,3}") {
        let digits = text.trim_start_matches(['+', '-']).len();
        let sign = text.len() - digits;
        let want = if digits > 19 || sign > 1 { None } else { text.parse::<i64>().ok() };
        proptest::prop_assert_eq!(int(text.as_bytes()), want, "{}", text);
    }

    /// No argument vector makes a parser panic, and every error it
    /// returns is one line of bounded length without NUL.
    #[test]
    fn parsers_take_any_bytes(args in proptest::collection::vec(atom(), 0..9)) {
        let a: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let errors = [
            set(&a).err(),
            add(&a).err(),
            key_only("inv.get", &a).err(),
            key_txid("inv.tx", &a).err(),
            reserve(&a).err(),
            extend(&a).err(),
            mreserve(&a, 3).err(),
            multi("inv.mcancel", &a, 3).err(),
            scan(&a).err(),
            apply(&a).err(),
        ];
        for e in errors.into_iter().flatten() {
            let text = e.to_string();
            proptest::prop_assert!(!text.contains(['\0', '\r', '\n']), "{text:?}");
            proptest::prop_assert!(text.len() < 400, "{} bytes: {text:?}", text.len());
        }
    }
}

#[test]
fn flash_sale_forms() {
    let r = reserve(&v("k t 3 BUYER alice TTL 50")).unwrap();
    assert_eq!(
        (r.ttl, r.buyer.map(|b| b.1)),
        (Ttl::Millis(50), Some(&b"alice"[..]))
    );
    let r = reserve(&v("k t 3 buyer bob")).unwrap();
    assert_eq!(
        (r.ttl, r.buyer.map(|b| b.0)),
        (Ttl::Default, BuyerId::new(b"bob").ok())
    );
    let m = mreserve(&v("t BUYER al 0 a 1 b 2"), 10).unwrap();
    assert_eq!(
        (m.buyer, m.items),
        (
            BuyerId::new(b"al").ok(),
            vec![(&b"a"[..], 1), (&b"b"[..], 2)]
        )
    );
    assert_eq!(mreserve_keys(&v("t BUYER al 0 a 1 b 2")), vec![4, 6]);
    assert_eq!(mreserve_keys(&v("t 0 a 1 b 2")), vec![2, 4]);
    assert_eq!(confirm(&v("k t QTY 2")).unwrap().qty, Some(2));
    assert_eq!(confirm(&v("k t")).unwrap().qty, None);
    let m = mconfirm(&v("t a QTY 2 b a QTY 2"), 10).unwrap();
    assert_eq!(m.items, vec![(&b"a"[..], Some(2)), (&b"b"[..], None)]);
    assert_eq!(mconfirm_keys(&v("t a QTY 2 b QTY")), vec![1, 4]);
    assert_eq!(mconfirm_keys(&v("t QTY b")), vec![1, 2]);
    let r = rules(&v("k limit 2 END 9 NEWSALE")).unwrap();
    assert_eq!(
        r.change,
        crate::ledger::RulesChange {
            limit: Some(2),
            start: None,
            end: Some(9),
            new_sale: true,
            ..Default::default()
        }
    );
    let r = rules(&v("k FEED on low 5 feed off")).unwrap_err();
    assert_eq!(r.to_string(), "ERR unknown option 'feed' for 'inv.rules'; accepted: LIMIT n, START unix-ms, END unix-ms, FEED ON|OFF, LOW n, NEWSALE");
    let r = rules(&v("k FEED on LOW 5")).unwrap();
    assert_eq!((r.change.feed, r.change.low), (Some(true), Some(5)));
    assert_eq!(rules(&v("k FEED off")).unwrap().change.feed, Some(false));
    assert_eq!(
        rules(&v("k FEED yes")).unwrap_err().to_string(),
        "ERR FEED takes ON or OFF"
    );
    assert!(rules(&v("k FEED")).is_err());
    assert!(rules(&v("k LOW -1")).is_err());
    let long = [b'b'; 65];
    let cases = [
        (err(reserve(&v("k t 1 BUYER a BUYER b"))), "ERR unknown option 'BUYER' for 'inv.reserve'; accepted: TTL ms | PXAT unix-ms, BUYER id, BLOCK ms"),
        (err(reserve(&[&b"k"[..], b"t", b"1", b"BUYER", b""])), "ERR buyer id must be 1 to 64 bytes, got 0"),
        (err(reserve(&[&b"k"[..], b"t", b"1", b"BUYER", &long[..]])), "ERR buyer id must be 1 to 64 bytes, got 65"),
        (err(confirm(&v("k t QTY 0"))), "ERR QTY must be an integer from 1 to 9007199254740991, got '0'"),
        (err(rules(&v("k"))), "ERR wrong number of arguments for 'inv.rules' command"),
        (err(rules(&v("k LIMIT -1"))), "ERR LIMIT must be an integer from 0 to 4294967295, got '-1'"),
        (err(rules(&v("k LIMIT 1 LIMIT 2"))), "ERR unknown option 'LIMIT' for 'inv.rules'; accepted: LIMIT n, START unix-ms, END unix-ms, FEED ON|OFF, LOW n, NEWSALE"),
        (err(adjust(&v("k t 0"))), "ERR qty must be an integer from 1 to 9007199254740991, got '0'"),
        (err(mconfirm(&v("t a QTY 1 a"), 10)), "ERR a key named twice in 'inv.mconfirm' must name the same QTY"),
        (err(mreserve(&v("t BUYER al 0 a"), 10)), "ERR wrong number of arguments for 'inv.mreserve' command"),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
}

#[test]
fn block_waits_for_ms_in_any_position() {
    assert_eq!(reserve(&v("k t 1")).unwrap().block, None);
    assert_eq!(reserve(&v("k t 1 BLOCK 250")).unwrap().block, Some(250));
    let r = reserve(&v("k t 1 block 0 TTL 5 BUYER b")).unwrap();
    assert_eq!((r.block, r.ttl), (Some(0), Ttl::Millis(5)));
    let r = reserve(&v("k t 1 PXAT 9 BUYER b BLOCK 7")).unwrap();
    assert_eq!((r.block, r.ttl), (Some(7), Ttl::At(9)));
    assert_eq!(
        err(reserve(&v("k t 1 BLOCK -1"))),
        "ERR BLOCK must be a non-negative integer of milliseconds, got '-1'"
    );
    assert_eq!(
        err(reserve(&v("k t 1 BLOCK 1 BLOCK 2"))),
        "ERR unknown option 'BLOCK' for 'inv.reserve'; accepted: TTL ms | PXAT unix-ms, BUYER id, BLOCK ms"
    );
    assert_eq!(
        err(reserve(&v("k t 1 BLOCK"))),
        "ERR wrong number of arguments for 'inv.reserve' command"
    );
}

#[test]
fn apply_reads_the_feed_stamp_with_and_without_its_age_floor() {
    use crate::ledger::{FeedStamp, StreamId};
    let id = |ms, seq| StreamId { ms, seq };
    let plain = apply(&v("k FEED 5-1 100 CANCEL t")).unwrap();
    assert_eq!(
        plain.feed,
        Some(FeedStamp {
            first: id(5, 1),
            maxlen: 100,
            minid: None
        })
    );
    let aged = apply(&v("k FEED 5-1 0 MINID 3-0 CANCEL t")).unwrap();
    assert_eq!(aged.feed.and_then(|f| f.minid), Some(id(3, 0)));
    assert_eq!(aged.effect, apply(&v("k CANCEL t")).unwrap().effect);
    for bad in [
        "k FEED 5-1 0 MINID 0-0 CANCEL t",
        "k FEED 5-1 0 MINID x CANCEL t",
        "k FEED 5-1 0 MINID",
        "k FEED 5-1 x CANCEL t",
    ] {
        assert!(apply(&v(bad)).is_err(), "{bad}");
    }
    assert_eq!(
        crate::ledger::age_floor(id(10_000, 4), 3_000),
        Some(id(7_000, 0))
    );
    assert_eq!(crate::ledger::age_floor(id(10, 4), 3_000), Some(id(1, 0)));
    assert_eq!(crate::ledger::age_floor(id(10, 4), 0), None);
}

#[test]
fn apply_reads_a_stamp_joined_to_the_effect_name_as_the_separate_one() {
    use crate::ledger::{FeedStamp, StreamId};
    let id = |ms, seq| StreamId { ms, seq };
    for (stamp, old, joined) in [
        (
            FeedStamp {
                first: id(5, 1),
                maxlen: 100,
                minid: None,
            },
            "k FEED 5-1 100 RESERVE t 2 9 BUYER b",
            "k RESERVE:5-1:100 t 2 9 BUYER b",
        ),
        (
            FeedStamp {
                first: id(u64::MAX, u64::MAX),
                maxlen: u64::MAX,
                minid: Some(id(u64::MAX, 0)),
            },
            "k FEED 18446744073709551615-18446744073709551615 18446744073709551615 \
             MINID 18446744073709551615-0 expire-first a b",
            "k expire-first:18446744073709551615-18446744073709551615:18446744073709551615:\
             18446744073709551615-0 a b",
        ),
    ] {
        let (o, j) = (apply(&v(old)).unwrap(), apply(&v(joined)).unwrap());
        assert_eq!((o.feed, j.feed), (Some(stamp), Some(stamp)), "{joined}");
        assert_eq!(o.effect, j.effect);
        // What a master writes is what this reads.
        let name = joined.split(' ').nth(1).unwrap().split(':').next().unwrap();
        assert_eq!(
            stamp.joined(name.as_bytes()).as_slice(),
            joined.split(' ').nth(1).unwrap().as_bytes()
        );
    }
    for bad in [
        "k CANCEL: t",
        "k CANCEL:5-1 t",
        "k CANCEL:5-1:x t",
        "k CANCEL:0-0:1 t",
        "k CANCEL:5-1:1:0-0 t",
        "k CANCEL:5-1:1:3-0: t",
        "k :5-1:1 CANCEL t",
        "k CAN:CEL:5-1:1 t",
        // One stamp only.
        "k FEED 5-1 100 CANCEL:5-1:100 t",
    ] {
        assert!(apply(&v(bad)).is_err(), "{bad}");
    }
}
