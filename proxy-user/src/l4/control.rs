//! The running L4 balancer: the loaded program plus its services, and the
//! changes made while weir runs (health, weights).

use proxy_common::{map_names, FrontendInfo, FrontendKey};

use super::{
    service::{self, L4Service, ServiceError},
    L4Error, XdpProgram,
};

/// Errors while programming the data path.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A map write failed.
    #[error(transparent)]
    L4(#[from] L4Error),
    /// A table could not be built.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// The program and the services it balances.
pub struct L4Control {
    program: XdpProgram,
    services: Vec<L4Service>,
    /// FRONTENDS entries of frontends that are only counted (not XDP services).
    counted: Vec<(FrontendKey, FrontendInfo)>,
    /// Size of one RINGS half (the largest table).
    stride: u32,
    reals_written: u32,
}

impl L4Control {
    /// Programs every table: data-path config, reals, one Maglev table per
    /// service (into the half not in use, found from the pinned FRONTENDS map
    /// so a reload never overwrites the table packets are using), the
    /// frontend table, and the redirect devmap.
    pub fn install(
        mut program: XdpProgram,
        mut services: Vec<L4Service>,
        counted: Vec<(FrontendKey, FrontendInfo)>,
        mut config: proxy_common::GlobalConfig,
    ) -> Result<Self, ControlError> {
        let (stride, _) = service::rings_len(&services);
        // No TCP/UDP all-ports frontend: the data path skips that second
        // lookup. (The ICMP entries of every VIP use port 0 by design; ICMP
        // always looks port 0 up.)
        let is_all_ports = |k: &FrontendKey| {
            k.port == 0
                && (k.proto == proxy_common::proto::TCP || k.proto == proxy_common::proto::UDP)
        };
        let all_ports = counted.iter().any(|(k, _)| is_all_ports(k))
            || services
                .iter()
                .flat_map(|s| s.frontend_entries(stride))
                .any(|(k, _)| is_all_ports(&k));
        if !all_ports {
            config.policy |= proxy_common::POLICY_NO_ALL_PORTS;
        }
        program.set_config(&config)?;
        let reals: Vec<_> = services.iter().flat_map(|s| s.real_infos()).collect();
        let reals_written = reals.iter().map(|(id, _)| id + 1).max().unwrap_or(0);
        program.set_reals(&reals, reals_written)?;
        for svc in &mut services {
            // The half the previous process left active, if any.
            if let Some(&(vip, _)) = svc.vips.first() {
                let key = super::frontend_key(vip, svc.proto);
                if let Some(info) = program.frontend_info(&key)? {
                    if info.ring_base == svc.ring_base(1, stride) {
                        svc.set_active_half(1);
                    }
                }
            }
        }
        program.allow_redirect_to_all_interfaces()?;
        let mut this = Self {
            program,
            services,
            counted,
            stride,
            reals_written,
        };
        for i in 0..this.services.len() {
            this.publish_table(i)?;
        }
        // Also the only write when there are no XDP services (counting only).
        this.write_frontends()?;
        Ok(this)
    }

    /// Builds service `i`'s table into its inactive half, then flips the
    /// FRONTENDS entries to it (the atomic switch).
    fn publish_table(&mut self, i: usize) -> Result<(), ControlError> {
        let table = self.services[i].table()?;
        let base = self.services[i].ring_base(self.services[i].inactive_half(), self.stride);
        self.program.write_ring(base, &table)?;
        self.services[i].flip();
        self.write_frontends()
    }

    fn write_frontends(&mut self) -> Result<(), ControlError> {
        let mut entries = self.counted.clone();
        for svc in &self.services {
            entries.extend(svc.frontend_entries(self.stride));
        }
        self.program.set_frontends(&entries)?;
        Ok(())
    }

    /// Marks real `real` of service `service` up or down and republishes the
    /// service's table. Flows already tracked keep their real (conntrack);
    /// flows of a down real are re-balanced when their entry is gone.
    pub fn set_real_up(
        &mut self,
        service: usize,
        real: usize,
        up: bool,
    ) -> Result<(), ControlError> {
        let Some(r) = self
            .services
            .get_mut(service)
            .and_then(|s| s.reals.get_mut(real))
        else {
            return Ok(());
        };
        if r.up == up {
            return Ok(());
        }
        r.up = up;
        // REALS holds exactly the reals that are up: a down real stops
        // receiving tracked flows too (their conntrack entries then miss),
        // and an earlier down real is never put back by a later change.
        let reals: Vec<_> = self.services.iter().flat_map(|s| s.real_infos()).collect();
        self.program.set_reals(&reals, self.reals_written)?;
        self.publish_table(service)
    }

    /// Sets a real's weight and republishes the table.
    pub fn set_weight(
        &mut self,
        service: usize,
        real: usize,
        weight: u32,
    ) -> Result<(), ControlError> {
        if let Some(r) = self
            .services
            .get_mut(service)
            .and_then(|s| s.reals.get_mut(real))
        {
            r.weight = weight;
            return self.publish_table(service);
        }
        Ok(())
    }

    /// The services.
    pub fn services(&self) -> &[L4Service] {
        &self.services
    }

    /// The program (attach, counters, logs).
    pub fn program_mut(&mut self) -> &mut XdpProgram {
        &mut self.program
    }

    /// The program.
    pub fn program(&self) -> &XdpProgram {
        &self.program
    }

    /// Stops: detaches and removes the pins if this was the last process.
    pub fn shutdown(self) -> bool {
        self.program.shutdown()
    }
}

/// Names of the maps sized from the config, and the sizes.
pub fn map_sizes(services: &[L4Service], conntrack_size: u32) -> Vec<(&'static str, u32)> {
    let mut sizes = Vec::new();
    let (_, rings) = service::rings_len(services);
    if rings > 0 {
        sizes.push((map_names::RINGS, rings));
    }
    if conntrack_size > 0 {
        sizes.push((map_names::CONNTRACK, conntrack_size));
        sizes.push((map_names::NAT_REVERSE, conntrack_size));
    }
    sizes
}
