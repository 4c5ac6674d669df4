import Foundation
import Synchronization

/// A tiny HTTP/1.1 server on 127.0.0.1 that records the body of every POST, for webhook tests. Answers 200, or the
/// status given to `respond(with:)`. One connection at a time; closes each after its answer.
public final class WebhookRecorder: @unchecked Sendable {
    public struct Request: Sendable {
        public var path: String
        public var body: String
        /// When the body had arrived (monotonic, `DispatchTime.now().uptimeNanoseconds`).
        public var receivedAt: UInt64
    }

    public let port: UInt16
    private let socket: Int32
    private let requests = Mutex<[Request]>([])
    private let status = Atomic<Int>(200)
    private let delayMilliseconds = Atomic<Int>(0)
    private let stopped = Atomic<Bool>(false)

    public init() throws {
        let (fd, boundPort) = try bindLoopbackSocket()
        guard listen(fd, 16) == 0 else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        socket = fd
        port = boundPort
        let thread = Thread { [self] in serve() }
        thread.start()
    }

    deinit { stop() }

    /// `http://127.0.0.1:PORT` + `path`.
    public func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }

    /// The status code of the answers from now on, given after `delayMilliseconds` (a slow endpoint).
    public func respond(with code: Int, delayMilliseconds delay: Int = 0) {
        status.store(code, ordering: .relaxed)
        delayMilliseconds.store(delay, ordering: .relaxed)
    }

    public var received: [Request] { requests.withLock { $0 } }

    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        shutdown(socket, Int32(SHUT_RDWR))
        close(socket)
    }

    private func serve() {
        while !stopped.load(ordering: .relaxed) {
            let client = accept(socket, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            handle(client)
            close(client)
        }
    }

    private func handle(_ client: Int32) {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var headerEnd: Int?
        var contentLength = 0
        while true {
            let n = read(client, &buffer, buffer.count)
            if n <= 0 { return }
            data += buffer[0..<n]
            if headerEnd == nil, let range = Data(data).range(of: Data("\r\n\r\n".utf8)) {
                headerEnd = range.upperBound
                let head = String(decoding: data[0..<range.lowerBound], as: UTF8.self)
                for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
                    contentLength = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
                }
            }
            if let end = headerEnd, data.count >= end + contentLength { break }
        }
        guard let end = headerEnd else { return }
        let requestLine = String(decoding: data.prefix { $0 != 0x0D }, as: UTF8.self).split(separator: " ")
        let path = requestLine.count > 1 ? String(requestLine[1]) : "/"
        let body = String(decoding: data[end..<min(data.count, end + contentLength)], as: UTF8.self)
        requests.withLock {
            $0.append(Request(path: path, body: body, receivedAt: DispatchTime.now().uptimeNanoseconds))
        }
        let delay = delayMilliseconds.load(ordering: .relaxed)
        if delay > 0 { usleep(UInt32(delay) * 1000) }
        let code = status.load(ordering: .relaxed)
        let answer =
            "HTTP/1.1 \(code) \(code == 200 ? "OK" : "Error")\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        _ = answer.withCString { write(client, $0, strlen($0)) }
    }
}
