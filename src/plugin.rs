//! The request pipeline (being written).
