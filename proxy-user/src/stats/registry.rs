//! Which stats object each configured entity counts into.
//!
//! Built once at start from the config: every frontend, backend, server,
//! XDP service and real gets an [`EntityCounters`] handle (shared in the
//! file when it has a guid, process-local otherwise). An XDP frontend is an
//! L4 service object and its servers are L4 real objects; a `listen` is a
//! frontend and a backend with the same guid (objects are keyed by guid and
//! type).

use std::collections::HashMap;

use super::{EntityCounters, ObjectType, StatsStore};
use crate::config::Config;

/// The handles of every entity of a config.
#[derive(Clone)]
pub struct Registry {
    /// Frontends (not XDP services), by name.
    pub frontends: HashMap<String, EntityCounters>,
    /// Backends, by name.
    pub backends: HashMap<String, EntityCounters>,
    /// Servers, by (backend, server).
    pub servers: HashMap<(String, String), EntityCounters>,
    /// XDP services, by frontend name.
    pub l4_services: HashMap<String, EntityCounters>,
    /// Reals of XDP services, by (frontend, server).
    pub l4_reals: HashMap<(String, String), EntityCounters>,
    /// Listeners (`bind ... guid G`), by (frontend, bind address).
    pub listeners: HashMap<(String, String), EntityCounters>,
}

/// One entity to register.
struct Entry {
    kind: Kind,
    key: (String, String),
    guid: Option<String>,
    ty: ObjectType,
}

#[derive(Clone, Copy)]
enum Kind {
    Frontend,
    Backend,
    Server,
    L4Service,
    L4Real,
    Listener,
}

impl Registry {
    /// Registers every entity of `cfg` in one pass (existing objects of the
    /// same guid and type are adopted first, so a reload continues them).
    /// Returns the registry and warnings for the log.
    pub fn register(store: &StatsStore, cfg: &Config) -> (Registry, Vec<String>) {
        let mut entries = Vec::new();
        let guid = |g: &Option<crate::config::Guid>| g.as_ref().map(|g| g.to_string());
        for fe in &cfg.frontends {
            let (kind, ty) = if fe.xdp.is_some() {
                (Kind::L4Service, ObjectType::L4Service)
            } else {
                (Kind::Frontend, ObjectType::Frontend)
            };
            entries.push(Entry {
                kind,
                key: (fe.name.clone(), String::new()),
                guid: guid(&fe.guid),
                ty,
            });
            // Only binds with a guid get a listener object (HAProxy counts
            // per listener only when asked to).
            for b in fe.binds.iter().filter(|b| b.guid.is_some()) {
                entries.push(Entry {
                    kind: Kind::Listener,
                    key: (fe.name.clone(), b.addr.to_string()),
                    guid: guid(&b.guid),
                    ty: ObjectType::Listener,
                });
            }
            if fe.xdp.is_some() {
                if let Some(be) = fe.default_backend.as_deref().and_then(|b| cfg.backend(b)) {
                    for s in &be.servers {
                        entries.push(Entry {
                            kind: Kind::L4Real,
                            key: (fe.name.clone(), s.name.clone()),
                            guid: guid(&s.guid),
                            ty: ObjectType::L4Real,
                        });
                    }
                }
            }
        }
        let l4_backends: Vec<&str> = cfg
            .frontends
            .iter()
            .filter(|f| f.xdp.is_some())
            .filter_map(|f| f.default_backend.as_deref())
            .collect();
        for be in &cfg.backends {
            if l4_backends.contains(&be.name.as_str()) {
                continue; // its servers are L4 reals, counted above
            }
            entries.push(Entry {
                kind: Kind::Backend,
                key: (be.name.clone(), String::new()),
                guid: guid(&be.guid),
                ty: ObjectType::Backend,
            });
            for s in &be.servers {
                entries.push(Entry {
                    kind: Kind::Server,
                    key: (be.name.clone(), s.name.clone()),
                    guid: guid(&s.guid),
                    ty: ObjectType::Server,
                });
            }
        }
        let list: Vec<(Option<&str>, ObjectType)> =
            entries.iter().map(|e| (e.guid.as_deref(), e.ty)).collect();
        let (handles, warnings) = store.register_many(&list);
        let mut reg = Registry {
            frontends: HashMap::new(),
            backends: HashMap::new(),
            servers: HashMap::new(),
            l4_services: HashMap::new(),
            l4_reals: HashMap::new(),
            listeners: HashMap::new(),
        };
        for (entry, handle) in entries.into_iter().zip(handles) {
            let (a, b) = entry.key;
            match entry.kind {
                Kind::Frontend => reg.frontends.insert(a, handle),
                Kind::Backend => reg.backends.insert(a, handle),
                Kind::Server => reg.servers.insert((a, b), handle),
                Kind::L4Service => reg.l4_services.insert(a, handle),
                Kind::L4Real => reg.l4_reals.insert((a, b), handle),
                Kind::Listener => reg.listeners.insert((a, b), handle),
            };
        }
        (reg, warnings)
    }
}
