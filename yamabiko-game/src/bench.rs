//! Load generator (to do).
