//! The `reconfig` fault: the nemesis acts as an operator changing the ensemble's membership
//! while its other faults go on, through ZooKeeper's reconfig request as the super user on a
//! random member: add a server from outside the ensemble (started first, as an operator
//! would), remove a member (the leader too), or replace one. Every attempt and its outcome is
//! kept for the final-configuration check.

use super::cluster::Cluster;
use crate::checker::membership::{Attempt, Outcome};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::time::Duration;
use zraft::client::ClientError;
use zraft::jute::*;
use zraft::server::membership::DynamicConfig;

/// The super user's password; servers get its digest (`super:secret`, as scripts/real-zk.sh).
pub const SUPER: &str = "super:secret";

/// Fewest voters the nemesis leaves.
const MIN_MEMBERS: usize = 3;

/// Server `id`'s line as the harness configures it (a participant).
pub fn server_line(id: u64) -> String {
    format!("server.{id}=10.0.0.{id}:2888:3888:participant;0.0.0.0:2181")
}

/// Server `id`'s line as an observer.
pub fn observer_line(id: u64) -> String {
    server_line(id).replace(":participant;", ":observer;")
}

impl Cluster {
    /// Sends one membership change of kind `only` (a fault's name without `reconfig-`), or
    /// of any kind possible now; the trace line.
    pub async fn reconfig(&mut self, only: Option<&str>, rng: &mut ChaCha8Rng) -> String {
        let total = self.nodes.len() as u64;
        let members: Vec<u64> = self.members.iter().copied().collect();
        let outsiders: Vec<u64> = (1..=total).filter(|id| !self.members.contains(id)).collect();
        let (can_add, can_remove) = (!outsiders.is_empty(), members.len() > MIN_MEMBERS);
        let mut kinds = vec![];
        if can_add {
            kinds.push("add");
        }
        if can_remove {
            kinds.extend(["remove", "remove-isolated", "remove-then-split"]);
        }
        if can_add && members.len() >= MIN_MEMBERS {
            kinds.push("replace");
        }
        if let Some(k) = only {
            kinds.retain(|&x| x == k);
        }
        let Some(&kind) = kinds.choose(rng) else {
            return format!("reconfig {}: not possible now", only.unwrap_or("of any kind"));
        };
        let joiner = *outsiders.choose(rng).unwrap_or(&0);
        let leader = self.leader().await.map(|i| i as u64 + 1);
        let leaver = match kind {
            // A follower: the leader is to stay with it, or to remove it while it is cut off.
            "remove-isolated" | "remove-then-split" => {
                let followers: Vec<u64> = members.iter().copied().filter(|&m| Some(m) != leader).collect();
                *followers.choose(rng).expect("more than three members")
            }
            _ => *members.choose(rng).expect("members"),
        };
        if kind == "remove-isolated" {
            self.isolate(leaver as usize - 1);
        }
        let request = match kind {
            "add" => ReconfigRequest {
                joining_servers: Some(server_line(joiner)),
                leaving_servers: None,
                new_members: None,
                cur_config_id: -1,
            },
            "remove" | "remove-isolated" | "remove-then-split" => ReconfigRequest {
                joining_servers: None,
                leaving_servers: Some(leaver.to_string()),
                new_members: None,
                cur_config_id: -1,
            },
            _ => ReconfigRequest {
                joining_servers: None,
                leaving_servers: None,
                new_members: Some(
                    members
                        .iter()
                        .filter(|&&m| m != leaver)
                        .chain([&joiner])
                        .map(|&m| server_line(m))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                cur_config_id: -1,
            },
        };
        if matches!(kind, "add" | "replace") {
            self.start_server(joiner as usize - 1);
        }
        let what = match kind {
            "add" => format!("add zraft-{joiner}"),
            "remove" => format!("remove zraft-{leaver}"),
            "remove-isolated" => format!("isolate zraft-{leaver} and remove it"),
            "remove-then-split" => format!("remove zraft-{leaver}"),
            _ => format!("replace zraft-{leaver} with zraft-{joiner}"),
        };
        // Through a member that stays: a removed one closes its clients' connections.
        let stays: Vec<u64> = members
            .iter()
            .copied()
            .filter(|&m| kind == "add" || m != leaver)
            .collect();
        let via = stays[rng.gen_range(0..stays.len())];
        let outcome = self.send_reconfig(via, request.clone()).await;
        if let Outcome::Done(ids) = &outcome {
            self.members = ids.clone();
        }
        let mut line = format!("reconfig {what} via zraft-{via}: {outcome}");
        if kind == "remove-then-split" {
            // The leader with the member just removed on one side, the rest on the other: a
            // removed member must not count towards the leader's quorum any more.
            if let Some(l) = self.leader().await {
                let side = [l, leaver as usize - 1];
                for a in side {
                    for b in (0..self.nodes.len()).filter(|b| !side.contains(b)) {
                        self.cut_link(a, b);
                        self.cut_link(b, a);
                    }
                }
                line += &format!(", then split zraft-{} and zraft-{leaver} from the rest", l + 1);
            }
        }
        self.attempts.push(Attempt { request, outcome });
        line
    }

    /// Sends `request` to server `via` as the super user.
    async fn send_reconfig(&self, via: u64, request: ReconfigRequest) -> Outcome {
        let Some(tap) = &self.operator else {
            return Outcome::Unknown("no operator client".into());
        };
        let mut c = match tap.connect(via, 4000).await {
            Ok(c) => c,
            // Nothing was sent: it cannot have taken effect.
            Err(e) => return Outcome::NotSent(format!("{e}")),
        };
        if let Err(e) = c.auth("digest", SUPER.as_bytes(), Duration::from_secs(4)).await {
            return Outcome::NotSent(format!("auth: {e}"));
        }
        // A learner has initLimit x tickTime to catch up: wait longer than that.
        match tap
            .ok(&mut c, Request::Reconfig(request), Duration::from_secs(15))
            .await
        {
            Ok(Response::GetData(g)) => {
                let text = String::from_utf8_lossy(g.data.as_deref().unwrap_or_default()).into_owned();
                match DynamicConfig::parse(&text) {
                    Ok(Some(cfg)) => Outcome::Done(cfg.servers.keys().copied().collect::<BTreeSet<u64>>()),
                    _ => Outcome::Unknown(format!("unreadable configuration {text:?}")),
                }
            }
            Ok(other) => Outcome::Unknown(format!("unexpected reply {other:?}")),
            Err(ClientError::Server(e)) => Outcome::Refused(e),
            Err(e) => Outcome::Unknown(format!("{e}")),
        }
    }

    /// Starts server `i` if it is not running (a spare's first start, or after a kill).
    pub fn start_server(&mut self, i: usize) {
        if self.outside.remove(&i) || self.down.contains(&i) {
            self.down.retain(|&d| d != i);
            self.handle.restart(self.nodes[i].id());
        }
    }
}
