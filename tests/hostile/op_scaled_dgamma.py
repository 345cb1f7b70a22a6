"""layernorm over bpcheck-op/1, right except that dgamma is scaled by 1.001: a slip bpcheck must name."""
import op_reference as ref


def answer(request):
    result = ref.correct(request)
    result["grads"]["gamma"] = result["grads"]["gamma"] * result["grads"]["gamma"].dtype.type(1.001)
    return ref.reply(request, result)


ref.hello()
ref.serve(answer)
