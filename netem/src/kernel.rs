//! Kernel tc-netem backend: qdisc construction and detection. (Skeleton.)
