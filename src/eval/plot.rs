//! Plots (placeholder while being written).
