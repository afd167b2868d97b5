//! Positions and GTID states: parsing, printing, ordering, merging.

use proptest::prelude::*;

use super::{gtid::parse_uuid, *};

#[test]
fn parses_and_prints_the_canonical_form() {
    let position: BinlogPosition = "mariadb-bin.000003:4321".parse().unwrap();
    assert_eq!(position.file(), "mariadb-bin.000003");
    assert_eq!(position.offset(), 4321);
    assert_eq!(position.to_string(), "mariadb-bin.000003:4321");
}

#[test]
fn rejects_malformed_positions() {
    for text in [
        "",
        "mariadb-bin.000003",
        ":4",
        "a:b",
        "f:3",
        "dir/f.1:4",
        "f.1:-4",
        "a b:4",
    ] {
        assert!(
            text.parse::<BinlogPosition>().is_err(),
            "{text:?} was accepted"
        );
    }
}

#[test]
fn orders_by_sequence_then_offset() {
    let a: BinlogPosition = "bin.000009:900".parse().unwrap();
    let b: BinlogPosition = "bin.000010:4".parse().unwrap();
    let c: BinlogPosition = "bin.000010:5".parse().unwrap();
    assert_eq!(a.try_cmp(&b), Some(Ordering::Less));
    assert_eq!(c.try_cmp(&b), Some(Ordering::Greater));
    assert_eq!(b.try_cmp(&b), Some(Ordering::Equal));
    let other: BinlogPosition = "other.000001:4".parse().unwrap();
    assert_eq!(a.try_cmp(&other), None);
}

#[test]
fn serializes_as_a_string() {
    let position: BinlogPosition = "bin.000001:120".parse().unwrap();
    assert_eq!(
        serde_json::to_string(&position).unwrap(),
        r#""bin.000001:120""#
    );
    let back: BinlogPosition = serde_json::from_str(r#""bin.000001:120""#).unwrap();
    assert_eq!(back, position);
}

#[test]
fn gtid_states_keep_the_last_gtid_per_domain() {
    let mut state: GtidState = "1-2-9, 0-1-57".parse().unwrap();
    assert_eq!(state.to_string(), "0-1-57,1-2-9");
    state.apply("0-3-58".parse().unwrap());
    state.apply("5-1-1".parse().unwrap());
    assert_eq!(state.to_string(), "0-3-58,1-2-9,5-1-1");
    assert_eq!("".parse::<GtidState>().unwrap(), GtidState::default());
    for bad in ["0-1", "a-b-c", "0-1-2-3", "0-1-5,0-2-6"] {
        assert!(bad.parse::<GtidState>().is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn mysql_gtid_sets_merge_print_and_compare_like_mysql() {
    let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    let mut set: GtidState = format!("{uuid}:1-5:7, 4e11fa47-71ca-11e1-9e33-c80aa9429562:3")
        .parse()
        .unwrap();
    assert!(set.is_mysql());
    assert_eq!(
        set.to_string(),
        format!("{uuid}:1-5:7,4e11fa47-71ca-11e1-9e33-c80aa9429562:3")
    );
    let gtid = |gno, tag: Option<&str>| MysqlGtid {
        uuid: parse_uuid(uuid).unwrap(),
        tag: tag.map(str::to_owned),
        gno,
    };
    set.apply_mysql(&gtid(6, None));
    set.apply_mysql(&gtid(2, Some("batch")));
    assert_eq!(
        set.to_string(),
        format!("{uuid}:1-7:batch:2,4e11fa47-71ca-11e1-9e33-c80aa9429562:3")
    );
    assert_eq!(
        gtid(9, Some("batch")).to_string(),
        format!("{uuid}:batch:9")
    );
    let back: GtidState = set.to_string().parse().unwrap();
    assert_eq!(back, set);

    // What a purged set has that the checkpoint lacks.
    let purged: GtidState = format!("{uuid}:1-9").parse().unwrap();
    assert_eq!(set.missing_from(&purged).to_string(), format!("{uuid}:8-9"));
    let purged: GtidState = format!("{uuid}:1-3").parse().unwrap();
    assert!(set.missing_from(&purged).is_empty());
    assert!(set.missing_from(&GtidState::default()).is_empty());

    assert_eq!(
        set.mysql_sids()[0],
        (parse_uuid(uuid).unwrap(), None, vec![(1, 8)])
    );
    for bad in [
        uuid.to_string(),
        format!("{uuid}:0"),
        format!("{uuid}:5-3"),
        format!("{uuid}:1-3,0-1-2"),
        "3e11fa47:1".to_owned(),
    ] {
        assert!(bad.parse::<GtidState>().is_err(), "{bad:?} was accepted");
    }
}

proptest! {
    #[test]
    fn display_and_from_str_round_trip(
        base in "[a-z][a-z0-9_-]{0,20}",
        seq in 0u32..1_000_000,
        offset in 4u64..u64::MAX,
    ) {
        let position = BinlogPosition::new(format!("{base}.{seq:06}"), offset).unwrap();
        let back: BinlogPosition = position.to_string().parse().unwrap();
        prop_assert_eq!(back, position);
    }
}

#[test]
fn a_mariadb_position_behind_a_files_start_names_the_domains_it_misses() {
    let state = |text: &str| text.parse::<GtidState>().unwrap();
    let behind = |ours: &str, start: &str| -> Vec<String> {
        state(ours)
            .mariadb_behind(&state(start))
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    // At or past the file's start in every domain: nothing is missing.
    assert!(behind("0-1-11", "0-1-11").is_empty());
    assert!(behind("0-1-12,1-1-3", "0-1-11").is_empty());
    assert!(behind("0-1-11", "").is_empty());
    // Behind in one domain, or never saw a domain the file starts after.
    assert_eq!(behind("0-1-10", "0-1-11"), ["0-1-11"]);
    assert_eq!(behind("0-1-11", "0-1-11,1-2-5"), ["1-2-5"]);
    assert_eq!(behind("0-1-9,1-2-7", "0-1-11,1-2-5"), ["0-1-11"]);
}
