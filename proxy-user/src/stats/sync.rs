//! The sync task: mirrors the XDP program's per-CPU counters into the
//! stats objects every `stats-sync-interval`.
//!
//! For each entity and counter it takes a mirror token *before* reading the
//! map, sums the per-CPU values, and commits the absolute sum: the object
//! stores the last mirrored value, so a reloaded process that re-opens the
//! pinned maps continues exactly, two processes mirroring at once never
//! double count, and a map whose sum went down (re-created) is re-baselined.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use proxy_common::{map_names, FlowCounters};

use super::{Counter, EntityCounters, StatsError};
use crate::l4::{control::L4Control, XdpProgram};

/// What to mirror: (entity, map, slot, kind of counters).
#[derive(Clone)]
pub struct MirrorPlan {
    /// Frontends and listeners counted by XDP: their handle and FRONTEND_STATS slots.
    pub frontends: Vec<(EntityCounters, Vec<u32>)>,
    /// XDP services: handle and stats slots (per VIP).
    pub services: Vec<(EntityCounters, Vec<u32>)>,
    /// Reals: handle and real id.
    pub reals: Vec<(EntityCounters, u32)>,
}

/// One sync pass.
pub fn sync_once(control: &L4Control, plan: &MirrorPlan) -> Result<(), StatsError> {
    sync_program(control.program(), plan)
}

/// One sync pass over the maps of `program` (what [`sync_once`] does; the
/// benchmark calls it on a program of its own).
pub fn sync_program(program: &XdpProgram, plan: &MirrorPlan) -> Result<(), StatsError> {
    // Frontends served in userspace count their own bytes (L7); from XDP
    // they only get the packets it saw for their addresses.
    for (handle, slots) in &plan.frontends {
        let token = handle.mirror_begin(Counter::PacketsIn)?;
        if let Ok(snap) = program.snapshot(slots) {
            token.commit(snap.frontends.iter().map(|(_, c)| c.packets).sum());
        }
    }
    // Whole maps in one batch read each; the tokens are taken before the
    // reads, so a concurrent mirror by another process is never counted twice.
    let l4 = [Counter::PacketsIn, Counter::BytesIn, Counter::NewFlows];
    let mut tokens = Vec::with_capacity(3 * (plan.services.len() + plan.reals.len()));
    let handles = plan
        .services
        .iter()
        .map(|(h, _)| h)
        .chain(plan.reals.iter().map(|(h, _)| h));
    for handle in handles {
        for c in l4 {
            tokens.push(handle.mirror_begin(c)?);
        }
    }
    let services = if plan.services.is_empty() {
        Vec::new()
    } else {
        program
            .flow_counters_all(map_names::SERVICE_STATS)
            .ok()
            .unwrap_or_default()
    };
    let reals = if plan.reals.is_empty() {
        Vec::new()
    } else {
        program
            .flow_counters_all(map_names::REAL_STATS)
            .ok()
            .unwrap_or_default()
    };
    let sum = |table: &[FlowCounters], ids: &[u32]| -> Option<[u64; 3]> {
        let mut total = FlowCounters::default();
        for &id in ids {
            let c = table.get(id as usize)?;
            total.packets += c.packets;
            total.bytes += c.bytes;
            total.new_flows += c.new_flows;
        }
        Some([total.packets, total.bytes, total.new_flows])
    };
    let sums = plan
        .services
        .iter()
        .map(|(_, slots)| sum(&services, slots))
        .chain(plan.reals.iter().map(|(_, id)| sum(&reals, &[*id])));
    let mut tokens = tokens.into_iter();
    for values in sums {
        for v in 0..3 {
            let token = tokens.next().expect("three tokens per entity");
            // A map unreadable this round: nothing committed; the next round catches up.
            if let Some(values) = values {
                token.commit(values[v]);
            }
        }
    }
    Ok(())
}

/// Runs [`sync_once`] every `interval` until the task is dropped; a final
/// pass runs when [`SyncTask::finish`] is called at shutdown.
pub struct SyncTask {
    control: Arc<Mutex<L4Control>>,
    plan: MirrorPlan,
    task: tokio::task::JoinHandle<()>,
}

impl SyncTask {
    /// Spawns the periodic task.
    pub fn spawn(control: Arc<Mutex<L4Control>>, plan: MirrorPlan, interval: Duration) -> Self {
        let (c, p) = (control.clone(), plan.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (c, p) = (c.clone(), p.clone());
                // Map reads are syscalls: off the async workers.
                let result = tokio::task::spawn_blocking(move || {
                    sync_once(&c.lock().unwrap_or_else(|e| e.into_inner()), &p)
                })
                .await;
                if let Ok(Err(e)) = result {
                    log::warn!("stats sync: {e}");
                }
            }
        });
        Self {
            control,
            plan,
            task,
        }
    }

    /// Stops the task after one last pass (so nothing counted is lost).
    pub fn finish(self) {
        self.task.abort();
        let guard = self.control.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = sync_once(&guard, &self.plan) {
            log::warn!("stats sync (final): {e}");
        }
    }
}
