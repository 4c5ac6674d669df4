import WALCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Which log directories a shipper ships: fixed directories, every log found under root folders, and glob patterns
/// (`/var/lib/agents/*/metrics`). A log directory is one holding `wal.meta`.
///
/// Discovery never follows a symbolic link (a link planted under a root is not a way to make the shipper read, or
/// retire, somebody else's folder), skips hidden folders (`.retired-*` among them), does not look inside a log
/// directory, and goes at most `maxDepth` folders below a root.
public struct LogSelection: Sendable, Equatable {
    public var directories: [String]
    public var roots: [String]
    public var patterns: [String]
    public var maxDepth = 4

    public init(directories: [String] = [], roots: [String] = [], patterns: [String] = []) {
        self.directories = directories
        self.roots = roots
        self.patterns = patterns
    }

    /// A selection of exactly one log.
    public static func single(_ directory: String) -> LogSelection { LogSelection(directories: [directory]) }

    /// True when the set of logs cannot change (no roots, no patterns): nothing is rescanned.
    public var isFixed: Bool { roots.isEmpty && patterns.isEmpty }

    /// The log directories present now, sorted, each once. Fixed directories are listed whether or not they hold a
    /// log yet (the shipper reports what is wrong with them).
    public func discover() -> [String] {
        var found = Set(directories.map(Self.normalized))
        for root in roots { Self.walk(Self.normalized(root), depth: 0, maxDepth: maxDepth, into: &found) }
        for pattern in patterns {
            for match in Self.glob(pattern) where Self.isLogDirectory(match) {
                found.insert(Self.normalized(match))
            }
        }
        return found.sorted()
    }

    static func normalized(_ path: String) -> String {
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        return trimmed
    }

    /// A real directory (not a link to one) holding a regular `wal.meta`.
    public static func isLogDirectory(_ path: String) -> Bool {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { return false }
        guard lstat(path + "/" + LogFormat.metaFileName, &info) == 0 else { return false }
        return info.st_mode & S_IFMT == S_IFREG
    }

    private static func walk(_ path: String, depth: Int, maxDepth: Int, into found: inout Set<String>) {
        if isLogDirectory(path) {
            found.insert(path)
            return
        }
        guard depth < maxDepth, let dir = opendir(path) else { return }
        defer { closedir(dir) }
        var children: [String] = []
        while let entry = readdir(dir) {
            // Directories only (d_type; unknown types are checked with lstat in isLogDirectory / the next walk).
            let type = entry.pointee.d_type
            guard type == UInt8(DT_DIR) || type == UInt8(DT_UNKNOWN) else { continue }
            let name = withUnsafePointer(to: entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name.hasPrefix(".") { continue }
            children.append(path == "/" ? "/" + name : path + "/" + name)
        }
        for child in children {
            var info = stat()
            guard lstat(child, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { continue }
            walk(child, depth: depth + 1, maxDepth: maxDepth, into: &found)
        }
    }

    private static func glob(_ pattern: String) -> [String] {
        var result = glob_t()
        defer { globfree(&result) }
        guard Glibc.glob(pattern, GLOB_ONLYDIR | GLOB_NOSORT, nil, &result) == 0 else { return [] }
        return (0..<Int(result.gl_pathc)).compactMap { index in result.gl_pathv[index].map { String(cString: $0) } }
    }
}
