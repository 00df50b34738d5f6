pub use licd_raft as raft; pub use licd_storage as storage;
