//! The edge Worker: a thin adapter over `shared` with R2 storage and the Cache API.
//!
//! Not built yet: the share routes arrive with the Worker issue. Until then the crate only
//! proves that `shared` links into it.
