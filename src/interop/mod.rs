//! Interop with the Python DINO ecosystem: PyTorch `.pth` checkpoints, TensorBoard event files and
//! NumPy `.npy` arrays, read and written without Python. Users bring weights from the reference
//! implementation, watch runs in TensorBoard and analyse features in NumPy; these are the formats
//! that lets them do so.
//!
//! A bottom layer: it depends on external crates only, never on the rest of this crate, so any
//! module can use it and it can move without dragging others along.
pub mod npy;
pub mod pth;
pub mod tensorboard;

#[cfg(test)]
mod testpy;
