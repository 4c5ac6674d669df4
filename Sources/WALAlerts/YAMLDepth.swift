/// A bound on how deeply a YAML document nests, checked before the text reaches Yams: its composer recurses once
/// per level, so a 10 KB file nested 5,000 levels deep (`[[[[...`, `{a: {a: ...`, `- - - ...`) overflows the stack
/// and kills the process with SIGSEGV. A thresholds file needs four levels; anything beyond `limit` is refused with
/// the line and column where the limit was passed.
///
/// The scan is conservative and linear: block nesting is counted from the stack of indentations and compact
/// collection markers (`- `, `? `) opening a line, flow nesting from unclosed `[` and `{` outside quoted strings
/// and comments. It may overcount (never undercount) what the composer will see, which is fine at a limit far
/// above any real file.
enum YAMLDepth {
    /// The deepest nesting accepted.
    static let limit = 64

    /// Where the nesting first went past `limit`, as 1-based line and column; nil when it never does.
    static func firstExcess(in text: String, limit: Int = YAMLDepth.limit) -> (line: Int, column: Int)? {
        var indents: [Int] = []
        var flow = 0
        var quote: UInt8?  // the open quote of a (possibly multi-line) flow scalar
        var line = 0
        for row in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            line += 1
            let bytes = Array(row)
            var index = 0
            var block = indents.count
            if flow == 0 && quote == nil {
                while index < bytes.count && bytes[index] == UInt8(ascii: " ") { index += 1 }
                let content = index < bytes.count && bytes[index] != UInt8(ascii: "#") && bytes[index] != 0x0D
                if content {
                    while let last = indents.last, last > index { indents.removeLast() }
                    if indents.last.map({ $0 < index }) ?? true { indents.append(index) }
                    block = indents.count
                    // Compact nested collections on one line: "- - - x", "? - x".
                    while index + 1 < bytes.count,
                        bytes[index] == UInt8(ascii: "-") || bytes[index] == UInt8(ascii: "?"),
                        bytes[index + 1] == UInt8(ascii: " ")
                    {
                        block += 1
                        index += 2
                        while index < bytes.count && bytes[index] == UInt8(ascii: " ") { index += 1 }
                        if block > limit { return (line, index + 1) }
                    }
                }
            }
            if block + flow > limit { return (line, index + 1) }
            while index < bytes.count {
                let byte = bytes[index]
                if let open = quote {
                    if byte == UInt8(ascii: "\\") && open == UInt8(ascii: "\"") {
                        index += 1
                    } else if byte == open {
                        // '' inside a single-quoted scalar is an escaped quote.
                        if open == UInt8(ascii: "'") && index + 1 < bytes.count && bytes[index + 1] == open {
                            index += 1
                        } else {
                            quote = nil
                        }
                    }
                    index += 1
                    continue
                }
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "'"):
                    // A quote opens a scalar only at its start (after an indicator or space), not inside a word.
                    let previous = index > 0 ? bytes[index - 1] : UInt8(ascii: " ")
                    if [
                        UInt8(ascii: " "), UInt8(ascii: "["), UInt8(ascii: "{"), UInt8(ascii: ","),
                        UInt8(ascii: ":"), UInt8(ascii: "-"), UInt8(ascii: "?"),
                    ].contains(previous) {
                        quote = byte
                    }
                case UInt8(ascii: "#"):
                    if index == 0 || bytes[index - 1] == UInt8(ascii: " ") { index = bytes.count }
                case UInt8(ascii: "["), UInt8(ascii: "{"):
                    flow += 1
                    if block + flow > limit { return (line, index + 1) }
                case UInt8(ascii: "]"), UInt8(ascii: "}"):
                    flow = max(0, flow - 1)
                default:
                    break
                }
                index += 1
            }
        }
        return nil
    }
}
