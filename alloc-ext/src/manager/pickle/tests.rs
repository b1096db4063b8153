//! Reader and writer against pickles made by Python 3.11 (`pickle.dumps`).

use super::*;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn s(x: &str) -> PyValue {
    PyValue::Str(x.to_owned())
}

fn token(addr: PyValue) -> PyValue {
    PyValue::Object {
        module: "multiprocessing.managers".into(),
        name: "Token".into(),
        args: vec![],
        state: Some(Box::new(PyValue::Tuple(vec![s("dict"), addr, s("7f00")]))),
    }
}

/// `Token('dict', addr, '7f00')` in protocols 4, 2 and 0 (`copyreg._reconstructor`).
#[test]
fn token_in_every_protocol() {
    let tcp = PyValue::Tuple(vec![s("127.0.0.1"), PyValue::Int(5)]);
    let t4 = "8004954a000000000000008c186d756c746970726f63657373696e672e6d616e6167657273948c05546f6b656e9493942981948c0464696374948c093132372e302e302e31944b0586948c0437663030948794622e";
    assert_eq!(loads(&unhex(t4)).unwrap(), token(tcp.clone()));
    let t2 = "8002636d756c746970726f63657373696e672e6d616e61676572730a546f6b656e0a710029817101580400000064696374710258060000002f746d702f7871035804000000376630307104877105622e";
    assert_eq!(loads(&unhex(t2)).unwrap(), token(s("/tmp/x")));
    let t0 = "63636f70795f7265670a5f7265636f6e7374727563746f720a70300a28636d756c746970726f63657373696e672e6d616e61676572730a546f6b656e0a70310a635f5f6275696c74696e5f5f0a6f626a6563740a70320a4e7470330a5270340a2856646963740a70350a562f746d702f780a70360a56376630300a70370a7470380a622e";
    assert_eq!(loads(&unhex(t0)).unwrap(), token(s("/tmp/x")));
    // What the writer makes of it reads back the same (and Python reads
    // it: tests/tests/manager.rs).
    let v = token(tcp);
    assert_eq!(loads(&dumps(&v).unwrap()).unwrap(), v);
}

/// `('ab', 'put', (b'xy', 1, -300, 2**40, 1.5, True, None, 'hé\n\\'), {'timeout': 2.0})`
/// in protocols 0, 1, 2 and 5.
#[test]
fn request_in_every_protocol() {
    let want = PyValue::Tuple(vec![
        s("ab"),
        s("put"),
        PyValue::Tuple(vec![
            PyValue::Bytes(b"xy".to_vec()),
            PyValue::Int(1),
            PyValue::Int(-300),
            PyValue::Int(1 << 40),
            PyValue::Float(1.5),
            PyValue::Bool(true),
            PyValue::None,
            s("h\u{e9}\n\\"),
        ]),
        PyValue::Dict(vec![(s("timeout"), PyValue::Float(2.0))]),
    ]);
    for p in [
        "285661620a70300a567075740a70310a28635f636f646563730a656e636f64650a70320a285678790a70330a566c6174696e310a70340a7470350a5270360a49310a492d3330300a4c313039393531313632373737364c0a46312e350a4930310a4e5668e95c75303030615c75303035630a70370a7470380a286470390a5674696d656f75740a7031300a46322e300a73747031310a2e",
        "285802000000616271005803000000707574710128635f636f646563730a656e636f64650a71022858020000007879710358060000006c6174696e3171047471055271064b014ad4feffff4c313039393531313632373737364c0a473ff80000000000004930310a4e580500000068c3a90a5c71077471087d7109580700000074696d656f7574710a4740000000000000007374710b2e",
        "8002285802000000616271005803000000707574710128635f636f646563730a656e636f64650a710258020000007879710358060000006c6174696e3171048671055271064b014ad4feffff8a06000000000001473ff8000000000000884e580500000068c3a90a5c71077471087d7109580700000074696d656f7574710a4740000000000000007374710b2e",
        "8005954f00000000000000288c026162948c03707574942843027879944b014ad4feffff8a06000000000001473ff8000000000000884e8c0568c3a90a5c9474947d948c0774696d656f7574944740000000000000007374942e",
    ] {
        assert_eq!(loads(&unhex(p)).unwrap(), want, "{p}");
    }
    assert_eq!(loads(&dumps(&want).unwrap()).unwrap(), want);
}

/// `[a, a, {1, 2}, frozenset([3]), bytearray(b'z')]` with `a = [1, [2]]`:
/// a shared reference to a list memoized before its items.
#[test]
fn shared_references_sets_bytearray() {
    let a = PyValue::List(vec![PyValue::Int(1), PyValue::List(vec![PyValue::Int(2)])]);
    let want = PyValue::List(vec![
        a.clone(),
        a,
        PyValue::Set(vec![PyValue::Int(1), PyValue::Int(2)]),
        PyValue::FrozenSet(vec![PyValue::Int(3)]),
        PyValue::Bytes(b"z".to_vec()),
    ]);
    let p4 = "80049540000000000000005d94285d94284b015d944b02616568018f94284b014b0290284b0391948c086275696c74696e73948c0962797465617272617994939443017a9485945294652e";
    let p2 = "80025d7100285d7101284b015d71024b0261656801635f5f6275696c74696e5f5f0a7365740a71035d7104284b014b0265857105527106635f5f6275696c74696e5f5f0a66726f7a656e7365740a71075d71084b036185710952710a635f5f6275696c74696e5f5f0a6279746561727261790a710b635f636f646563730a656e636f64650a710c58010000007a710d58060000006c6174696e31710e86710f527110857111527112652e";
    assert_eq!(loads(&unhex(p4)).unwrap(), want);
    assert_eq!(loads(&unhex(p2)).unwrap(), want);
}

#[test]
fn exceptions_and_refused_globals() {
    let e = "80049522000000000000008c06234552524f52948c065f7175657565948c05456d70747994939429529486942e";
    assert_eq!(
        loads(&unhex(e)).unwrap(),
        PyValue::Tuple(vec![
            s("#ERROR"),
            PyValue::object("_queue", "Empty", vec![])
        ])
    );
    // pickle.dumps(print)
    let evil = "80049516000000000000008c086275696c74696e73948c057072696e749493942e";
    assert_eq!(
        loads(&unhex(evil)),
        Err(PickleError::Global {
            module: "builtins".into(),
            name: "print".into()
        })
    );
    assert_eq!(
        loads(b"cos\nsystem\n(S'id'\ntR."),
        Err(PickleError::Global {
            module: "os".into(),
            name: "system".into()
        })
    );
    let k = PyValue::exception("KeyError", "x");
    assert_eq!(loads(&dumps(&k).unwrap()).unwrap(), k);
}

#[test]
fn hostile_input_is_an_error() {
    assert_eq!(loads(b""), Err(PickleError::Truncated));
    assert_eq!(loads(b"\x80\x04N"), Err(PickleError::Truncated));
    assert_eq!(loads(b"\x80\x06N."), Err(PickleError::Protocol(6)));
    assert_eq!(loads(b"N.x"), Err(PickleError::TrailingBytes));
    assert_eq!(loads(b"a."), Err(PickleError::Malformed("stack underflow")));
    assert_eq!(loads(b"X\xff\xff\xff\xff"), Err(PickleError::Truncated));
    assert_eq!(loads(b"i"), Err(PickleError::Unsupported(b'i')));
    // 2**64 does not fit.
    assert_eq!(
        loads(b"\x8a\x09\0\0\0\0\0\0\0\0\x01."),
        Err(PickleError::IntTooLarge)
    );
    // Deep nesting: ']' * 200 then 'a' * 199.
    let mut deep = vec![b']'; 200];
    deep.extend(std::iter::repeat_n(b'a', 199));
    deep.push(b'.');
    assert_eq!(loads(&deep), Err(PickleError::TooDeep));
    // A billion laughs: each level lists the previous one twice.
    let mut laughs = b"]\x94".to_vec();
    for i in 0..40u8 {
        laughs.extend_from_slice(&[b']', b'h', i, b'h', i, b'\x86', b'a', b'\x94']);
    }
    laughs.push(b'.');
    assert!(matches!(
        loads(&laughs),
        Err(PickleError::TooBig | PickleError::TooDeep | PickleError::Malformed(_))
    ));
    // A list that contains itself.
    assert_eq!(loads(b"]\x94h\x00a."), Err(PickleError::TooDeep));
}

#[test]
fn ints_round_trip_at_every_width() {
    for i in [
        0,
        1,
        255,
        256,
        65535,
        65536,
        -1,
        -129,
        i64::from(i32::MAX),
        i64::from(i32::MAX) + 1,
        i64::from(i32::MIN) - 1,
        1 << 40,
        -(1 << 40),
        i64::MAX,
        i64::MIN,
    ] {
        let v = PyValue::Int(i);
        assert_eq!(loads(&dumps(&v).unwrap()).unwrap(), v, "{i}");
    }
}
