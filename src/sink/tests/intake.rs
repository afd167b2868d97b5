//! The intake's tests: oversized events, alone and inside a batch's run on one key.

use super::*;

/// A batch's events are taken as runs on one key (one lookup per run): an oversized event
/// inside a run is skipped without ending the run's order, and the next key's run starts
/// where the first one ends.
#[tokio::test(start_paused = true)]
async fn an_oversize_event_inside_a_batch_run_is_skipped_and_the_order_holds() {
    let event = |table: &str, n: u64, size: usize| {
        // Zeros before the number make it large and still parse.
        let line = format!("db.{table}:{n:0>width$}\n", width = size + 1).into_bytes();
        OutboundEvent {
            table: TableName::new("db", table),
            key: format!("db.{table}").into(),
            position: BinlogPosition::new("b.000001", 4 + n).unwrap(),
            line: EventLine::raw(line),
            moved_from: None,
        }
    };
    let batch = || {
        Message::Events(vec![
            event("t0", 0, 0),
            event("t0", 1, 5000),
            event("t0", 2, 0),
            event("t0", 3, 0),
            event("t1", 4, 0),
            event("t1", 5, 5000),
            event("t0", 6, 0),
        ])
    };
    // After the batch (the harness's check reads offset 5 as "event 0 is written"; the
    // skipped events are never written).
    let boundary =
        || Message::Boundary(ResumePoint::at(BinlogPosition::new("b.000001", 5).unwrap()).into());
    let fake = Arc::new(Fake::default());
    let metrics = Arc::new(Metrics::default());
    let config = SinkConfig {
        oversize: Oversize::Skip,
        ..config(1024)
    };
    let (result, acks) = drive_with_metrics(
        fake.clone(),
        vec![batch(), boundary()],
        config,
        metrics.clone(),
    )
    .await;
    assert_eq!(result.unwrap().events, 5);
    assert_eq!(metrics.oversize_skipped.get(), 2);
    assert_eq!(acks.last().unwrap().to_string(), "b.000001:5");
    let order = stored_order(&fake);
    assert_eq!(order["db.t0"], vec![0, 2, 3, 6]);
    assert_eq!(order["db.t1"], vec![4]);

    let fake = Arc::new(Fake::default());
    let (result, acks) = drive(fake.clone(), vec![batch(), boundary()], super::config(1024)).await;
    match result {
        Err(SinkError::EventTooLarge { position, .. }) => {
            assert_eq!(position.to_string(), "b.000001:5")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        acks.is_empty(),
        "nothing is acknowledged past a refused event"
    );
}

#[tokio::test(start_paused = true)]
async fn an_oversize_event_is_skipped_and_counted_when_asked() {
    let fake = Arc::new(Fake::default());
    let mut items = vec![Message::Event(OutboundEvent {
        table: TableName::new("db", "big"),
        key: "db.big".into(),
        position: "b.000001:77".parse().unwrap(),
        line: {
            let mut after = br#"{"id":7,"blob":""#.to_vec();
            after.extend_from_slice(&[b'x'; 2000]);
            after.extend_from_slice(br#""}"#);
            EventLine::build(
                br#"{"row":"#,
                0,
                b"null",
                Some(br#"{"id":7}"#),
                None,
                Some(&after),
            )
        },
        moved_from: None,
    })];
    items.extend(workload(4, 2, 2));
    let metrics = Arc::new(Metrics::default());
    let config = SinkConfig {
        oversize: Oversize::Skip,
        ..config(1024)
    };
    let (result, acks) = drive_with_metrics(fake.clone(), items, config, metrics.clone()).await;
    assert_eq!(result.unwrap().events, 4);
    // The boundaries after the skipped event still commit: it is not waited for.
    assert_eq!(acks.last().unwrap().to_string(), "b.000001:8");
    assert_eq!(metrics.oversize_skipped.get(), 1);
    assert!(fake
        .written
        .lock()
        .unwrap()
        .iter()
        .all(|r| r.partition_key != "db.big"));
}
