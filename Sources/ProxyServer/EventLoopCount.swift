import Foundation
import NIOCore

/// How many event loops (threads) the proxy runs: one per CPU it may run on.
///
/// NIO's `System.coreCount` honours cgroup quotas and cpusets but not the process's own CPU affinity, so under
/// `taskset -c 0` (or a systemd `CPUAffinity=`) it still counted every online CPU, and two event loops then shared
/// one core: the kernel switched between them every few milliseconds, and a connection on the waiting loop waited
/// that long (a p99 several times the p50 in the benchmark). The count here is the smaller of the two.
enum EventLoopCount {
    static func forThisProcess() -> Int {
        max(1, min(System.coreCount, self.affinityCPUCount() ?? Int.max))
    }

    /// CPUs in this process's affinity mask, or nil where that cannot be read. Linux: the `Cpus_allowed` mask
    /// in `/proc/self/status` (what `sched_getaffinity` returns; Swift's Glibc module does not export that call).
    static func affinityCPUCount() -> Int? {
        #if os(Linux)
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        return self.cpuCount(statusText: status)
        #else
        return nil
        #endif
    }

    /// The number of bits set in `Cpus_allowed:` (hex words separated by commas), or nil without that line.
    static func cpuCount(statusText: String) -> Int? {
        for line in statusText.split(separator: "\n") where line.hasPrefix("Cpus_allowed:") {
            var count = 0
            for character in line.dropFirst("Cpus_allowed:".count) {
                guard let digit = character.hexDigitValue else { continue }
                count += digit.nonzeroBitCount
            }
            return count > 0 ? count : nil
        }
        return nil
    }
}
