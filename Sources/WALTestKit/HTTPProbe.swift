import Foundation

/// What an HTTP/1.1 server answered: the status, the headers (names lowercased) and the body as text.
public struct HTTPReply: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: String
}

/// Sends `request` as is to 127.0.0.1:`port` and returns every byte the server sent until it closed the connection
/// (or `timeoutSeconds` passed); nil when nothing could be connected. Raw on purpose: tests send garbage with it.
public func httpExchange(port: Int, _ request: [UInt8], timeoutSeconds: Double = 10) -> [UInt8]? {
    guard let fd = connectLoopback(port: port) else { return nil }
    defer { close(fd) }
    var timeout = timeval(
        tv_sec: Int(timeoutSeconds),
        tv_usec: Int(timeoutSeconds.truncatingRemainder(dividingBy: 1) * 1e6)
    )
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var sent = 0
    while sent < request.count {
        let written = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard written > 0 else { break }  // The server may close on garbage before reading it all.
        sent += written
    }
    var received: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { break }
        received += chunk[0..<count]
    }
    return received
}

/// `GET path` (or another method) with `Connection: close`; nil when the server could not be reached or answered
/// something that is not HTTP.
public func httpGet(port: Int, _ path: String, method: String = "GET", timeoutSeconds: Double = 10) -> HTTPReply? {
    let request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n"
    guard let bytes = httpExchange(port: port, Array(request.utf8), timeoutSeconds: timeoutSeconds) else { return nil }
    return parseHTTPReply(bytes)
}

/// The first response in `bytes`.
public func parseHTTPReply(_ bytes: [UInt8]) -> HTTPReply? {
    let text = String(decoding: bytes, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { return nil }
    let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
    let statusParts = lines.first?.split(separator: " ") ?? []
    guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
        return nil
    }
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return HTTPReply(status: status, headers: headers, body: String(text[split.upperBound...]))
}

/// A TCP socket connected to 127.0.0.1:`port` (the caller closes it), or nil.
public func connectLoopback(port: Int) -> Int32? {
    let fd = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
    guard connected else {
        close(fd)
        return nil
    }
    return fd
}
