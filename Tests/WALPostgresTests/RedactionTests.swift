import Testing

@testable import WALPostgres

@Suite struct RedactionTests {
    @Test(arguments: [
        ("host=db user=m password=s3cret dbname=x", "host=db user=m password=*** dbname=x"),
        ("postgres://metrics:s3cret@db:5432/x?sslmode=require", "postgres://metrics:***@db:5432/x?sslmode=require"),
        (
            "postgresql://db/x?user=m&password=s3cret&sslmode=require",
            "postgresql://db/x?user=m&password=***&sslmode=require"
        ),
        ("host=127.0.0.1 port=5432 user=postgres", "host=127.0.0.1 port=5432 user=postgres"),
    ])
    func passwordsNeverAppearInLogs(conninfo: String, redacted: String) {
        #expect(redactConninfo(conninfo) == redacted)
        #expect(!redactConninfo(conninfo).contains("s3cret"))
    }

    @Test func transientAndPermanentErrorsAreTold() {
        #expect(PGError(message: "x", connectionLost: true).isTransient)
        #expect(PGError(message: "x", sqlState: "57P01").isTransient, "admin shutdown")
        #expect(PGError(message: "x", sqlState: "57014").isTransient, "statement timeout")
        #expect(PGError(message: "x", sqlState: "40001").isTransient, "serialization failure")
        #expect(PGError(message: "x", sqlState: "08006").isTransient, "connection failure")
        #expect(!PGError(message: "x", sqlState: "23505").isTransient, "unique violation")
        #expect(!PGError(message: "x", sqlState: "22001").isTransient, "string too long")
        #expect(!PGError(message: "x", fatal: true).isTransient)
    }
}
