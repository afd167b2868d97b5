//! Where replication starts: a pure decision (`plan`) from what the operator asked for, the
//! saved checkpoint and two facts about the server, then `open`, which checks the chosen
//! point on the server (still there? a transaction start? no needed GTID purged?) and opens
//! the binlog stream there.
//!
//! | asked for          | checkpoint                      | start                                   |
//! |--------------------|---------------------------------|-----------------------------------------|
//! | `--start-position` | any                             | there (must be a transaction start)     |
//! | `--start-gtid`     | any                             | after that GTID state, by GTID          |
//! | `--from-end`       | any                             | the server's end of binlog              |
//! | the checkpoint     | with undecided XA transactions  | where the first of them starts (catch-up) |
//! | the checkpoint     | with a GTID state this server uses | the checkpoint, by GTID               |
//! | the checkpoint     | with a file position only       | the checkpoint's position               |
//! | the checkpoint     | none yet                        | the server's end of binlog              |

use mysql_async::{BinlogStream, Conn};

use super::{
    connect,
    snapshot::plan::{self as snapshots, Saved},
    xa::CatchUp,
    SourceError,
};
use crate::{
    config::{Config, MysqlConfig, SnapshotMode},
    metrics::Metrics,
    position::{BinlogPosition, GtidState, ResumePoint},
    stream::{Boundary, SnapshotState},
};

/// Where replication starts, as asked for on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    /// `--start-position FILE:POS`
    Position(BinlogPosition),
    /// `--from-end`: the server's current end of binlog.
    End,
    /// `--start-gtid`: after this GTID state, on whichever server is configured.
    Gtid(GtidState),
    /// The checkpoint, or the server's end when there is none yet.
    Checkpoint,
}

/// What [`plan`] needs to know about the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerFacts {
    /// MariaDB (GTIDs are domain-server-sequence) rather than MySQL.
    pub(crate) is_mariadb: bool,
    /// MySQL with `gtid_mode=ON`: a GTID set can start a stream.
    pub(crate) mysql_gtids: bool,
}

impl ServerFacts {
    /// Whether `gtid` can start a stream on this server.
    pub(crate) fn can_resume(&self, gtid: &GtidState) -> bool {
        !gtid.is_empty()
            && (gtid.is_mysql() != self.is_mariadb)
            && (self.is_mariadb || self.mysql_gtids)
    }

    /// Whether reconnects may resume by GTID whenever the state is known.
    pub(crate) fn resume_by_gtid(&self) -> bool {
        self.is_mariadb || self.mysql_gtids
    }
}

/// Where to start, decided; [`open`] carries it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartPlan {
    /// `--start-position`: there, once the server confirms it is a transaction start.
    Position(BinlogPosition),
    /// `--start-gtid`: after that state, by GTID.
    Gtid(GtidState),
    /// The server's current end of binlog.
    End {
        /// Why: `--from-end`, no checkpoint yet, or a purged checkpoint healed by a snapshot.
        because: EndBecause,
    },
    /// The checkpoint lists undecided XA transactions: read again from where the first of
    /// them starts, up to the checkpoint (see [`super::xa`]).
    CatchUp {
        /// Where the first prepared transaction starts.
        from: BinlogPosition,
        /// The checkpoint.
        until: BinlogPosition,
        /// The XIDs still undecided there.
        pending: Vec<String>,
    },
    /// The checkpoint, by its GTID state (it works on any server of the topology).
    CheckpointByGtid(ResumePoint),
    /// The checkpoint, by its file position.
    CheckpointByPosition(BinlogPosition),
}

impl StartPlan {
    /// Whether this start is saved as the checkpoint before the first event is read: every
    /// start but a resume from the checkpoint, so that a run that stops before its first
    /// acknowledged boundary restarts from here, not from a later end of binlog.
    pub(crate) fn saved_before_reading(&self) -> bool {
        !matches!(
            self,
            StartPlan::CatchUp { .. }
                | StartPlan::CheckpointByGtid(_)
                | StartPlan::CheckpointByPosition(_)
        )
    }
}

/// Decides where to start from what was asked, the checkpoint (as the boundary it saved) and
/// the server's facts. The only refusal here is a `--start-gtid` the server cannot use.
pub(crate) fn plan(
    asked: StartFrom,
    checkpoint: Option<Boundary>,
    server: ServerFacts,
) -> Result<StartPlan, SourceError> {
    Ok(match (asked, checkpoint) {
        (StartFrom::Position(position), _) => StartPlan::Position(position),
        (StartFrom::Gtid(gtid), _) if !server.can_resume(&gtid) => {
            return Err(SourceError::UnusableStartGtid { gtid })
        }
        (StartFrom::Gtid(gtid), _) => StartPlan::Gtid(gtid),
        (StartFrom::End, _) => StartPlan::End {
            because: EndBecause::Asked,
        },
        (StartFrom::Checkpoint, None) => StartPlan::End {
            because: EndBecause::NoCheckpoint,
        },
        (StartFrom::Checkpoint, Some(saved)) if !saved.prepared.is_empty() => {
            let from = saved
                .prepared
                .iter()
                .map(|p| &p.position)
                .min_by(|a, b| a.try_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
                .expect("not empty")
                .clone();
            StartPlan::CatchUp {
                from,
                until: saved.point.position,
                pending: saved.prepared.into_iter().map(|p| p.xid).collect(),
            }
        }
        (StartFrom::Checkpoint, Some(saved))
            if saved
                .point
                .gtid
                .as_ref()
                .is_some_and(|g| server.can_resume(g)) =>
        {
            StartPlan::CheckpointByGtid(saved.point)
        }
        (StartFrom::Checkpoint, Some(saved)) => {
            StartPlan::CheckpointByPosition(saved.point.position)
        }
    })
}

/// A start carried out: the stream opened, the snapshots to read.
pub(crate) struct Begun {
    /// The stream.
    pub(crate) opened: Opened,
    /// The snapshot state the run starts with; `None` with snapshots off.
    pub(crate) snapshot: Option<SnapshotState>,
    /// Whether the start is saved as the checkpoint before the first event is read (see
    /// [`StartPlan::saved_before_reading`]).
    pub(crate) save_start: bool,
}

/// Plans the snapshots and the start, and opens the stream. With `snapshot.mode =
/// "when_needed"`, a checkpoint whose position the server no longer has (purged while the
/// daemon was down) is not the end: the run starts at the server's end of binlog and
/// snapshots every included table again, loudly (`SnapshotsAfterPurge`).
pub(crate) async fn begin(
    mut conn: Conn,
    config: &Config,
    asked: StartFrom,
    checkpoint: (Option<Boundary>, Saved),
    server: ServerFacts,
    metrics: &Metrics,
) -> Result<Begun, SourceError> {
    let (boundary, saved) = checkpoint;
    let (snapshot_config, filter) = (&config.snapshot, &config.filter);
    let snapshot = snapshots::plan(&mut conn, snapshot_config, filter, saved, server.is_mariadb);
    let snapshot = snapshot.await?;
    let rules = (&config.columns, &config.changes);
    for finding in super::rules::findings(&mut conn, filter, rules.0, rules.1).await? {
        if finding.refused {
            return Err(SourceError::ColumnRule {
                finding: finding.to_string(),
            });
        }
        tracing::warn!(table = %finding.table, column = %finding.column, rule = finding.word, "{finding}");
    }
    let plan = plan(asked, boundary, server)?;
    let save_start = plan.saved_before_reading();
    let error = match open(conn, plan, server, &config.mysql).await {
        Ok(opened) => {
            return Ok(Begun {
                opened,
                snapshot,
                save_start,
            })
        }
        Err(error @ SourceError::PositionNotOnServer { .. })
            if !save_start && snapshot_config.mode == SnapshotMode::WhenNeeded =>
        {
            error
        }
        Err(error) => return Err(error),
    };
    tracing::error!(error = %crate::report::error_chain(&error), "the checkpoint's position is no longer on the server: changes since it are lost to the binlog. snapshot.mode = \"when_needed\": starting at the server's end of binlog and snapshotting every included table again");
    metrics.snapshots_after_purge.add(1);
    let mut conn = connect::connect(&config.mysql).await?;
    let purged = Saved::Purged;
    let snapshot = snapshots::plan(
        &mut conn,
        snapshot_config,
        filter,
        purged,
        server.is_mariadb,
    );
    let snapshot = snapshot.await?;
    let end = StartPlan::End {
        because: EndBecause::Purged,
    };
    Ok(Begun {
        opened: open(conn, end, server, &config.mysql).await?,
        snapshot,
        save_start: true,
    })
}

/// Why a start begins at the server's end of binlog (for the log line that says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndBecause {
    /// `--from-end`.
    Asked,
    /// No checkpoint yet.
    NoCheckpoint,
    /// The checkpoint's binlog is gone and `snapshot.mode = "when_needed"` snapshots instead.
    Purged,
}

/// Where the stream was opened.
pub(crate) struct Opened {
    /// The stream, at `point`.
    pub(crate) stream: BinlogStream,
    /// Where it starts, with the GTID state there when known.
    pub(crate) point: ResumePoint,
    /// Reading the checkpoint's prepared XA transactions again first.
    pub(crate) catch_up: Option<CatchUp>,
}

/// Checks the planned start on the server and opens the binlog stream there. On MariaDB the
/// GTID state at a file position comes from `BINLOG_GTID_POS`, so every checkpoint can resume
/// on another server of the topology; on MySQL it is known at the end of the binlog
/// (`Executed_Gtid_Set`) and at the start of every file (PREVIOUS_GTIDS).
pub(crate) async fn open(
    mut conn: Conn,
    plan: StartPlan,
    server: ServerFacts,
    mysql: &MysqlConfig,
) -> Result<Opened, SourceError> {
    let (point, by_gtid, catch_up) = resolve(&mut conn, plan, server).await?;
    let (server_id, heartbeat) = (mysql.server_id.get(), mysql.heartbeat);
    let stream = match &point.gtid {
        Some(gtid) if by_gtid => {
            connect::open_stream_gtid(conn, server_id, gtid, &point.position, heartbeat).await?
        }
        _ => connect::open_stream(conn, server_id, &point.position, heartbeat).await?,
    };
    Ok(Opened {
        stream,
        point,
        catch_up,
    })
}

/// The planned start as a point on this server, checked; whether to ask for it by GTID.
async fn resolve(
    conn: &mut Conn,
    plan: StartPlan,
    server: ServerFacts,
) -> Result<(ResumePoint, bool, Option<CatchUp>), SourceError> {
    let gtid_at = async |conn: &mut Conn, position: &BinlogPosition| {
        if server.is_mariadb {
            connect::gtid_state_at(conn, position).await
        } else {
            None
        }
    };
    Ok(match plan {
        StartPlan::Position(position) => {
            tracing::info!(%position, "starting from --start-position");
            connect::ensure_position_available(conn, &position).await?;
            connect::ensure_transaction_start(conn, &position).await?;
            let gtid = gtid_at(conn, &position).await;
            (ResumePoint { position, gtid }, false, None)
        }
        StartPlan::Gtid(gtid) => {
            let position = connect::current_position(conn).await?;
            if gtid.is_mysql() {
                connect::ensure_gtids_available(conn, &gtid, &position).await?;
            }
            tracing::info!(%gtid, "starting after --start-gtid");
            let gtid = Some(gtid);
            (ResumePoint { position, gtid }, true, None)
        }
        StartPlan::End { because } => {
            let (position, executed) = connect::current_status(conn).await?;
            let gtid = if server.is_mariadb {
                connect::gtid_state_at(conn, &position).await
            } else {
                executed.filter(|_| server.mysql_gtids)
            };
            let point = ResumePoint { position, gtid };
            match because {
                EndBecause::NoCheckpoint => {
                    tracing::info!(%point, "no checkpoint yet: starting from the server's current end of binlog")
                }
                EndBecause::Asked => {
                    tracing::info!(%point, "starting from the server's current end of binlog (--from-end)")
                }
                EndBecause::Purged => {
                    tracing::info!(%point, "starting from the server's current end of binlog; every included table is snapshotted again (snapshot.mode = \"when_needed\")")
                }
            }
            (point, false, None)
        }
        StartPlan::CatchUp {
            from,
            until,
            pending,
        } => {
            tracing::info!(position = %until, prepared_xa = pending.len(), %from, "resuming from the checkpoint; reading its prepared XA transactions again from where the first starts");
            connect::ensure_position_available(conn, &from).await?;
            let gtid = gtid_at(conn, &from).await;
            let catch_up = CatchUp {
                until,
                pending: pending.into_iter().collect(),
                initial_gtid: gtid.clone(),
            };
            let point = ResumePoint {
                position: from,
                gtid,
            };
            (point, false, Some(catch_up))
        }
        StartPlan::CheckpointByGtid(point) => {
            if let Some(gtid) = point.gtid.as_ref().filter(|g| g.is_mysql()) {
                connect::ensure_gtids_available(conn, gtid, &point.position).await?;
            }
            tracing::info!(%point, "resuming from the checkpoint by GTID");
            (point, true, None)
        }
        StartPlan::CheckpointByPosition(position) => {
            tracing::info!(%position, "resuming from the checkpoint");
            connect::ensure_position_available(conn, &position).await?;
            let gtid = gtid_at(conn, &position).await;
            (ResumePoint { position, gtid }, false, None)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::PreparedXa;

    const MARIADB: ServerFacts = ServerFacts {
        is_mariadb: true,
        mysql_gtids: false,
    };
    const MYSQL_GTIDS: ServerFacts = ServerFacts {
        is_mariadb: false,
        mysql_gtids: true,
    };
    const MYSQL_NO_GTIDS: ServerFacts = ServerFacts {
        is_mariadb: false,
        mysql_gtids: false,
    };

    fn at(position: &str) -> BinlogPosition {
        position.parse().unwrap()
    }

    fn maria_gtid() -> GtidState {
        "0-1-42".parse().unwrap()
    }

    fn mysql_gtid() -> GtidState {
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5".parse().unwrap()
    }

    fn saved(position: &str, gtid: Option<GtidState>, prepared: &[(&str, &str)]) -> Boundary {
        Boundary {
            point: ResumePoint {
                position: at(position),
                gtid,
            },
            binlog_ts: 0,
            snapshot: None,
            prepared: prepared
                .iter()
                .map(|(xid, position)| PreparedXa {
                    xid: (*xid).to_owned(),
                    position: at(position),
                })
                .collect(),
        }
    }

    #[test]
    fn a_start_position_wins_over_the_checkpoint_and_is_saved() {
        let plan = plan(
            StartFrom::Position(at("bin.000002:4")),
            Some(saved("bin.000009:100", None, &[])),
            MARIADB,
        )
        .unwrap();
        assert_eq!(plan, StartPlan::Position(at("bin.000002:4")));
        assert!(plan.saved_before_reading());
    }

    #[test]
    fn a_start_gtid_the_server_can_use_starts_by_gtid() {
        let plan = plan(StartFrom::Gtid(maria_gtid()), None, MARIADB).unwrap();
        assert_eq!(plan, StartPlan::Gtid(maria_gtid()));
        assert!(plan.saved_before_reading());
        let plan = super::plan(StartFrom::Gtid(mysql_gtid()), None, MYSQL_GTIDS).unwrap();
        assert_eq!(plan, StartPlan::Gtid(mysql_gtid()));
    }

    #[test]
    fn a_start_gtid_of_the_other_flavour_or_without_gtid_mode_is_refused() {
        for (gtid, server) in [
            (mysql_gtid(), MARIADB),
            (maria_gtid(), MYSQL_GTIDS),
            (mysql_gtid(), MYSQL_NO_GTIDS),
        ] {
            let error = plan(StartFrom::Gtid(gtid.clone()), None, server).unwrap_err();
            assert!(
                matches!(&error, SourceError::UnusableStartGtid { gtid: g } if *g == gtid),
                "{error}"
            );
        }
    }

    #[test]
    fn from_end_ignores_the_checkpoint_and_is_saved() {
        let plan = plan(
            StartFrom::End,
            Some(saved("bin.000009:100", None, &[])),
            MARIADB,
        )
        .unwrap();
        assert_eq!(
            plan,
            StartPlan::End {
                because: EndBecause::Asked
            }
        );
        assert!(plan.saved_before_reading());
    }

    #[test]
    fn no_checkpoint_starts_at_the_end_and_saves_it() {
        let plan = plan(StartFrom::Checkpoint, None, MARIADB).unwrap();
        assert_eq!(
            plan,
            StartPlan::End {
                because: EndBecause::NoCheckpoint
            }
        );
        assert!(plan.saved_before_reading());
    }

    #[test]
    fn a_checkpoint_with_prepared_xa_reads_again_from_the_earliest() {
        let plan = plan(
            StartFrom::Checkpoint,
            Some(saved(
                "bin.000003:900",
                Some(maria_gtid()),
                &[
                    ("X'02',X'',1", "bin.000003:500"),
                    ("X'01',X'',1", "bin.000002:700"),
                ],
            )),
            MARIADB,
        )
        .unwrap();
        assert_eq!(
            plan,
            StartPlan::CatchUp {
                from: at("bin.000002:700"),
                until: at("bin.000003:900"),
                pending: vec!["X'02',X'',1".into(), "X'01',X'',1".into()],
            }
        );
        assert!(!plan.saved_before_reading());
    }

    #[test]
    fn a_checkpoint_resumes_by_gtid_where_the_server_uses_its_state() {
        let point = saved("bin.000003:900", Some(maria_gtid()), &[]);
        let plan = plan(StartFrom::Checkpoint, Some(point.clone()), MARIADB).unwrap();
        assert_eq!(plan, StartPlan::CheckpointByGtid(point.point));
        assert!(!plan.saved_before_reading());
        let point = saved("bin.000003:900", Some(mysql_gtid()), &[]);
        let plan = super::plan(StartFrom::Checkpoint, Some(point.clone()), MYSQL_GTIDS).unwrap();
        assert_eq!(plan, StartPlan::CheckpointByGtid(point.point));
    }

    #[test]
    fn a_checkpoint_resumes_by_position_otherwise() {
        for (gtid, server) in [
            (None, MARIADB),
            (Some(GtidState::default()), MARIADB),
            (Some(mysql_gtid()), MYSQL_NO_GTIDS),
            (Some(maria_gtid()), MYSQL_GTIDS),
        ] {
            let plan = plan(
                StartFrom::Checkpoint,
                Some(saved("bin.000003:900", gtid, &[])),
                server,
            )
            .unwrap();
            assert_eq!(plan, StartPlan::CheckpointByPosition(at("bin.000003:900")));
            assert!(!plan.saved_before_reading());
        }
    }
}
