pub mod cgroup_cmds;
pub mod exec;
pub mod features;
pub mod list;
pub mod log;
pub mod spec;
