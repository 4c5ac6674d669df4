import Foundation

/// A TCP socket bound to 127.0.0.1 on a port the kernel chose; returns the descriptor (the caller closes it or
/// listens on it) and the port.
public func bindLoopbackSocket() throws -> (fd: Int32, port: UInt16) {
    let fd = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard bound else {
        close(fd)
        throw POSIXError(.EADDRINUSE)
    }
    return (fd, UInt16(bigEndian: address.sin_port))
}

/// A loopback port nobody listens on (bound, then closed): what a server that is down looks like.
public func unusedLoopbackPort() throws -> UInt16 {
    let (fd, port) = try bindLoopbackSocket()
    close(fd)
    return port
}
