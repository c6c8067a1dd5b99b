package gateway

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
)

func protoPhase(phase string) gatewayv1.ReshardPlan_Phase {
	switch phase {
	case phaseWarming:
		return gatewayv1.ReshardPlan_PHASE_WARMING
	case phaseSwitching:
		return gatewayv1.ReshardPlan_PHASE_SWITCHING
	case phaseDone:
		return gatewayv1.ReshardPlan_PHASE_DONE
	case phaseCancelled:
		return gatewayv1.ReshardPlan_PHASE_CANCELLED
	}
	return gatewayv1.ReshardPlan_PHASE_UNSPECIFIED
}

// started reports whether Start has set up the shards and the coordinator; the atomic load
// orders the read of s.coord after Start's write.
func (s *Server) started() error {
	if s.manager.Load() == nil {
		return status.Error(codes.Unavailable, "the gateway is still starting: retry in a moment")
	}
	return nil
}

// GetReshardStatus implements gatewayv1.GatewayServiceServer.
func (s *Server) GetReshardStatus(ctx context.Context, _ *gatewayv1.GetReshardStatusRequest) (*gatewayv1.GetReshardStatusResponse, error) {
	if err := s.started(); err != nil {
		return nil, err
	}
	st, err := coordStatus(ctx, s.coord)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading the reshard status: %v", err)
	}
	resp := &gatewayv1.GetReshardStatusResponse{ActiveShardCount: uint32(st.Active)}
	if st.Phase != "" {
		resp.Reshard = &gatewayv1.ReshardPlan{
			FromShardCount: uint32(st.From),
			ToShardCount:   uint32(st.To),
			Phase:          protoPhase(st.Phase),
			Reason:         st.Reason,
		}
	}
	return resp, nil
}

// Reshard implements gatewayv1.GatewayServiceServer.
func (s *Server) Reshard(ctx context.Context, req *gatewayv1.ReshardRequest) (*gatewayv1.ReshardResponse, error) {
	to := int(req.GetShardCount())
	if to < 1 {
		return nil, status.Error(codes.InvalidArgument, "shard_count must be at least 1")
	}
	if to > maxShardCount {
		return nil, status.Errorf(codes.InvalidArgument, "shard_count %d is over %d, more than any bot runs", to, maxShardCount)
	}
	if len(s.cfg.ShardIDs) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition,
			"this pod runs the fixed shards %v (--shard-ids), which do not reshard; run the pods without --shard-ids to reshard", s.cfg.ShardIDs)
	}
	if err := s.started(); err != nil {
		return nil, err
	}
	if s.draining.Load() {
		return nil, status.Error(codes.Unavailable, "this gateway pod is draining: ask another pod")
	}
	from, err := proposeReshard(ctx, s.coord, to)
	if refusal, ok := errors.AsType[*reshardRefusal](err); ok {
		return nil, status.Error(codes.FailedPrecondition, refusal.msg)
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "proposing the reshard: %v", err)
	}
	s.log.Info("reshard requested over gRPC", "from", from, "to", to)
	return &gatewayv1.ReshardResponse{FromShardCount: uint32(from), ToShardCount: uint32(to)}, nil
}

// ReshardPhaseName is the name ReshardStatus.Phase uses for p ("" for unspecified).
func ReshardPhaseName(p gatewayv1.ReshardPlan_Phase) string {
	switch p {
	case gatewayv1.ReshardPlan_PHASE_WARMING:
		return phaseWarming
	case gatewayv1.ReshardPlan_PHASE_SWITCHING:
		return phaseSwitching
	case gatewayv1.ReshardPlan_PHASE_DONE:
		return phaseDone
	case gatewayv1.ReshardPlan_PHASE_CANCELLED:
		return phaseCancelled
	}
	return ""
}
