package advantage

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is a failed RPC: the gRPC status code and the server's message, which names the
// offending field (e.g. "trajectory.reward"; see proto/README.md, "Errors").
// status.Code(err) and status.Convert(err) work on it too.
type Error struct {
	Code    codes.Code
	Message string
	status  *status.Status
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", CodeName(e.Code), e.Message) }

// GRPCStatus makes status.FromError, status.Code and status.Convert see the original status.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// codeNames are the canonical names of the status codes (grpc-go's String() spells them
// differently, e.g. "InvalidArgument").
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
	codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
	codes.Unauthenticated: "UNAUTHENTICATED",
}

// CodeName is the canonical name of a status code, e.g. "INVALID_ARGUMENT".
func CodeName(c codes.Code) string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return fmt.Sprintf("CODE_%d", uint32(c))
}

// wrap turns a gRPC error into *Error (other errors are returned as they are).
func wrap(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		return &Error{Code: s.Code(), Message: s.Message(), status: s}
	}
	return err
}
