"""What a node holds: the inspector and its tensor views, the chain rule at the cursor and its explanation, the
step list, the layer and neuron views, and the gradient check's table."""
