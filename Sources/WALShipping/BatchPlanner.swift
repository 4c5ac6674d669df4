/// How a host shipper fills one batch from many logs: a pure function, so fairness is tested without a log or a
/// sink.
///
/// Max-min fairness (water-filling) over the logs that have records waiting: each gets an equal share of the
/// batch; what a log does not need is shared among the others; and the order in which leftover single records are
/// handed out rotates from batch to batch. So a log with a backlog of millions gets most of every batch while
/// nobody else waits, yet a log with ten fresh records gets all ten into the very next batch. Within a log, the
/// records taken are always its oldest (the order within each log is kept).
public enum BatchPlanner {
    /// Takes from each log: `ready[i]` records are waiting in log `i`; returns how many to take from each (same
    /// indices), at most `capacity` in all. `rotation` picks who is served first when shares are indivisible.
    public static func plan(ready: [Int], capacity: Int, rotation: Int = 0) -> [Int] {
        var take = [Int](repeating: 0, count: ready.count)
        guard !ready.isEmpty, capacity > 0 else { return take }
        let start = ((rotation % ready.count) + ready.count) % ready.count
        var order = Array(start..<ready.count) + Array(0..<start)
        order.removeAll { ready[$0] <= 0 }
        var remaining = capacity
        while remaining > 0 && !order.isEmpty {
            let share = max(1, remaining / order.count)
            var unsatisfied: [Int] = []
            for index in order {
                guard remaining > 0 else {
                    unsatisfied.append(index)
                    continue
                }
                let grant = min(share, ready[index] - take[index], remaining)
                take[index] += grant
                remaining -= grant
                if take[index] < ready[index] { unsatisfied.append(index) }
            }
            order = unsatisfied
        }
        return take
    }
}
