//! licd-jepsen: runs licd under faults and checks every run's history.
