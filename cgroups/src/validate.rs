//! Checks on `linux.resources` that need no kernel, run before the first write so bad input
//! fails with nothing written.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use crate::error::{Error, Result};

/// A byte or time value from the spec, with 0 read as "not set": runtimes built on Go
/// structs emit 0 for fields the user never gave, and runc ignores them the same way.
pub(crate) fn set(v: Option<i64>) -> Option<i64> {
    v.filter(|x| *x != 0)
}

pub fn resources(r: &LinuxResources) -> Result<()> {
    if let Some(m) = r.memory() {
        if let Some(s) = m.swappiness() {
            if s > 100 {
                return Err(Error::invalid(
                    "linux.resources.memory.swappiness",
                    format!("{s} is above 100"),
                ));
            }
        }
        for (name, v) in [
            ("limit", m.limit()),
            ("reservation", m.reservation()),
            ("swap", m.swap()),
            ("kernel", m.kernel()),
            ("kernelTCP", m.kernel_tcp()),
        ] {
            if let Some(v) = v {
                if v < -1 {
                    return Err(Error::invalid(
                        format!("linux.resources.memory.{name}"),
                        format!("{v} is negative (use -1 for unlimited)"),
                    ));
                }
            }
        }
    }
    if let Some(b) = r.block_io() {
        check_blkio_weight("linux.resources.blockIO.weight", b.weight())?;
        check_blkio_weight("linux.resources.blockIO.leafWeight", b.leaf_weight())?;
        for d in b.weight_device().iter().flatten() {
            check_device_number("linux.resources.blockIO.weightDevice", d.major(), d.minor())?;
            check_blkio_weight("linux.resources.blockIO.weightDevice.weight", d.weight())?;
            check_blkio_weight(
                "linux.resources.blockIO.weightDevice.leafWeight",
                d.leaf_weight(),
            )?;
        }
        for (name, list) in [
            ("throttleReadBpsDevice", b.throttle_read_bps_device()),
            ("throttleWriteBpsDevice", b.throttle_write_bps_device()),
            ("throttleReadIOPSDevice", b.throttle_read_iops_device()),
            ("throttleWriteIOPSDevice", b.throttle_write_iops_device()),
        ] {
            for d in list.iter().flatten() {
                check_device_number(
                    &format!("linux.resources.blockIO.{name}"),
                    d.major(),
                    d.minor(),
                )?;
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        parse_page_size(h.page_size())?;
    }
    for (i, d) in r.devices().iter().flatten().enumerate() {
        device_rule(i, d)?;
    }
    if let Some(rdma) = r.rdma() {
        for name in rdma.keys() {
            if name.is_empty() || name.contains(char::is_whitespace) || name.contains('/') {
                return Err(Error::invalid(
                    "linux.resources.rdma",
                    format!("{name:?} is not an RDMA device name"),
                ));
            }
        }
    }
    for (k, v) in r.unified().iter().flatten() {
        crate::v2::unified::check_key(k)?;
        if v.contains('\0') {
            return Err(Error::invalid(
                format!("linux.resources.unified[{k:?}]"),
                "value contains a NUL byte",
            ));
        }
    }
    if let Some(n) = r.network() {
        for p in n.priorities().iter().flatten() {
            if p.name().is_empty() || p.name().contains(char::is_whitespace) {
                return Err(Error::invalid(
                    "linux.resources.network.priorities",
                    format!("{:?} is not an interface name", p.name()),
                ));
            }
        }
    }
    Ok(())
}

fn check_blkio_weight(field: &str, w: Option<u16>) -> Result<()> {
    match w {
        Some(w) if w != 0 && !(10..=1000).contains(&w) => {
            Err(Error::invalid(field, format!("{w} is outside 10..=1000")))
        }
        _ => Ok(()),
    }
}

fn check_device_number(field: &str, major: i64, minor: i64) -> Result<()> {
    if major < 0 || minor < 0 || major > u32::MAX as i64 || minor > u32::MAX as i64 {
        return Err(Error::invalid(
            field,
            format!("{major}:{minor} is not a device number"),
        ));
    }
    Ok(())
}

/// The kernel's name for a hugepage size ("2MB", "1GB", "64KB"), validated.
pub(crate) fn parse_page_size(s: &str) -> Result<u64> {
    let field = "linux.resources.hugepageLimits.pageSize";
    let bad = || {
        Error::invalid(
            field,
            format!("{s:?} is not a page size like \"2MB\" or \"1GB\""),
        )
    };
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .ok_or_else(bad)?;
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "KB" => 1u64 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        _ => return Err(bad()),
    };
    if n == 0 || !n.is_power_of_two() {
        return Err(bad());
    }
    Ok(n * mult)
}

/// A device rule checked and rendered as the v1 "type major:minor access" form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceRule {
    pub allow: bool,
    /// 'a', 'b' or 'c'.
    pub kind: char,
    /// None is any.
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Subset of "rwm", never empty.
    pub access: String,
}

impl DeviceRule {
    pub fn v1_line(&self) -> String {
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        format!(
            "{} {}:{} {}",
            self.kind,
            num(self.major),
            num(self.minor),
            self.access
        )
    }
}

pub(crate) fn device_rule(i: usize, d: &LinuxDeviceCgroup) -> Result<DeviceRule> {
    let field = |f: &str| format!("linux.resources.devices[{i}].{f}");
    let kind = match d.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => 'a',
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::C => 'c',
        t => {
            return Err(Error::invalid(
                field("type"),
                format!(
                    "{:?} is not a cgroup device type (use \"a\", \"b\" or \"c\")",
                    t.as_str()
                ),
            ))
        }
    };
    let num = |name: &str, v: Option<i64>| -> Result<Option<u32>> {
        match v {
            None | Some(-1) => Ok(None),
            Some(n) if (0..=u32::MAX as i64).contains(&n) => Ok(Some(n as u32)),
            Some(n) => Err(Error::invalid(
                field(name),
                format!("{n} is not a device number"),
            )),
        }
    };
    let major = num("major", d.major())?;
    let minor = num("minor", d.minor())?;
    let access = d.access().clone().unwrap_or_else(|| "rwm".to_string());
    if access.is_empty() || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(Error::invalid(
            field("access"),
            format!("{access:?} is not a combination of r, w and m"),
        ));
    }
    let mut canon = String::new();
    for c in ['r', 'w', 'm'] {
        if access.contains(c) {
            canon.push(c);
        }
    }
    Ok(DeviceRule {
        allow: d.allow(),
        kind,
        major,
        minor,
        access: canon,
    })
}

pub(crate) fn device_rules(r: &LinuxResources) -> Result<Vec<DeviceRule>> {
    r.devices()
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, d)| device_rule(i, d))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    #[test]
    fn page_sizes() {
        assert_eq!(parse_page_size("2MB").unwrap(), 2 << 20);
        assert_eq!(parse_page_size("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_page_size("64KB").unwrap(), 64 << 10);
        for bad in ["2M", "MB", "3MB", "0MB", "2mb", "", "2MB/../x"] {
            let e = parse_page_size(bad).unwrap_err().to_string();
            assert!(e.contains("pageSize"), "{bad}: {e}");
        }
    }

    #[test]
    fn device_rules_render_and_reject() {
        let d = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .access("mwr")
            .build()
            .unwrap();
        assert_eq!(device_rule(0, &d).unwrap().v1_line(), "c 1:3 rwm");
        let d = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .build()
            .unwrap();
        let r = device_rule(0, &d).unwrap();
        assert_eq!(r.v1_line(), "a *:* rwm");
        assert!(!r.allow);
        let d = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::P)
            .build()
            .unwrap();
        let e = device_rule(2, &d).unwrap_err().to_string();
        assert!(e.contains("devices[2].type"), "{e}");
        let d = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .access("rx")
            .build()
            .unwrap();
        assert!(device_rule(0, &d)
            .unwrap_err()
            .to_string()
            .contains("access"));
        let d = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .major(-7)
            .build()
            .unwrap();
        assert!(device_rule(0, &d)
            .unwrap_err()
            .to_string()
            .contains("major"));
    }
}
