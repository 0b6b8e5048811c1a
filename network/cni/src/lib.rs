//! CNI runner.
